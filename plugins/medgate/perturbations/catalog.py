"""fixtures/perturbations.toml: named perturbation sets and the texts perturbations insert."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from medgate.paths import fixtures_dir
from medgate.perturbations.base import PerturbationError

LANGUAGES = ("en", "es")
Texts = Mapping[str, tuple[str, ...]]  # language -> phrases


@dataclass(frozen=True)
class Catalog:
    path: Path
    sets: Mapping[str, tuple[str, ...]]  # as written: entries are perturbation or set names
    gold_nota: Texts
    distractor_nota: Texts
    distractor_sentences: Texts

    def expand(self, set_name: str, _seen: tuple[str, ...] = ()) -> list[str]:
        """The perturbation names of a set, nested sets expanded, in order, without repeats."""
        if set_name in _seen:
            raise PerturbationError(f"{self.path}: set {set_name!r} includes itself ({' -> '.join(_seen)})")
        names: list[str] = []
        for entry in self.sets[set_name]:
            expanded = self.expand(entry, (*_seen, set_name)) if entry in self.sets else [entry]
            names += [name for name in expanded if name not in names]
        return names


def _texts(path: Path, data: Mapping[str, object], *keys: str) -> Texts:
    where = ".".join(keys)
    section: object = data
    for key in keys:
        if not isinstance(section, Mapping) or key not in section:
            raise PerturbationError(f"{path}: missing table [{where}]")
        section = section[key]
    assert isinstance(section, Mapping)
    texts: dict[str, tuple[str, ...]] = {}
    for language in LANGUAGES:
        phrases = section.get(language)
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip()
                                                                   for p in phrases):
            raise PerturbationError(f"{path}: [{where}] needs a non-empty list of texts for {language!r}")
        texts[language] = tuple(phrases)
    return texts


def load_catalog(path: Path) -> Catalog:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise PerturbationError(f"{path}: cannot read perturbation catalog ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise PerturbationError(f"{path}: not valid TOML ({error})") from None
    sets = data.get("sets")
    if not isinstance(sets, dict) or not sets:
        raise PerturbationError(f"{path}: missing table [sets]")
    for name, entries in sets.items():
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise PerturbationError(f"{path}: set {name!r} must be a list of names")
    return Catalog(
        path=path,
        sets={name: tuple(entries) for name, entries in sets.items()},
        gold_nota=_texts(path, data, "nota", "gold"),
        distractor_nota=_texts(path, data, "nota", "distractor"),
        distractor_sentences=_texts(path, data, "distractor_sentences"),
    )


@lru_cache(maxsize=None)
def catalog() -> Catalog:
    return load_catalog(fixtures_dir() / "perturbations.toml")


def texts_for(texts: Texts, language: str, what: str) -> tuple[str, ...]:
    if language not in texts:
        raise PerturbationError(f"no {what} for language {language!r} in {catalog().path}")
    return texts[language]
