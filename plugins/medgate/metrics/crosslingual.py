"""Cross-lingual agreement: whether an item's English and Spanish twins (the same pair id, the
perturbation, prompt and mode) chose the same published option. The cell's dataset names the twin
datasets (TwinPair.name); the definition is in the catalogue and the README.
"""

from __future__ import annotations

from collections.abc import Sequence

from medgate.metrics.records import CaseRecord, TwinPair
from medgate.metrics.units import Cells, combo_of, flag, group
from medgate.metrics.values import ALL, Combo, Ratio, Unit


def crosslingual(records: Sequence[CaseRecord], cells: Cells) -> None:
    """One unit per twin pair, perturbation, prompt and mode whose English and Spanish case each ran once."""
    # Read block by block (the run's shared grouping), so that within a perturbation, prompt and mode
    # the twins meet by pair id alone. An id seen twice in a language maps to None: it is no pair.
    sides: dict[tuple[str, str, str], tuple[dict[str, CaseRecord | None], dict[str, CaseRecord | None]]] = {}
    for (_, perturbation, prompt, mode), block in group(records, "dataset", "perturbation", "prompt",
                                                        "mode").items():
        found = sides.get((perturbation, prompt, mode))
        if found is None:
            found = sides[(perturbation, prompt, mode)] = ({}, {})
        english, spanish = found
        for r in block:
            pair_id = r.get("pair_id")
            if not pair_id:
                continue
            language = r["language"]
            side = english if language == "en" else spanish if language == "es" else None
            if side is not None:
                side[pair_id] = None if pair_id in side else r
    names: dict[tuple[str, str], str] = {}
    for (perturbation, prompt, mode), (english, spanish) in sides.items():
        # Each pair's unit lands in one cell per prompt: gathered per dataset pair, then filled in bulk.
        places: dict[str, tuple[dict[Unit, Ratio], set[Combo]]] = {}
        for pair_id, en in english.items():
            es = spanish.get(pair_id)
            if en is None or es is None:
                continue
            same = en["predicted_origin"] is not None and en["predicted_origin"] == es["predicted_origin"]
            datasets = (en["dataset"], es["dataset"])
            dataset = names.get(datasets)
            if dataset is None:
                dataset = names[datasets] = TwinPair.of((en, es)).name
            place = places.get(dataset)
            if place is None:
                place = places[dataset] = ({}, set())
            place[0][(pair_id, perturbation, prompt, mode)] = flag(same)
            place[1].update((combo_of(en), combo_of(es)))
        for dataset, (units, combos) in places.items():
            for place_prompt in (prompt, ALL):
                target = cells.at(("crosslingual_agreement", dataset, perturbation, place_prompt, mode))
                target.units.update(units)
                target.prompts.add(prompt)
                target.combos.update(combos)
