"""Prediction groups: every variant of an item under one prompt meets in one group, of bounded size."""

from collections import defaultdict

from medgate.cases import expand_cases
from medgate.datasets import default_data_dir, load_dataset
from medgate.perturbations import resolve_set


def _cases(limit, perturbations, prompts, group_size):
    dataset = load_dataset("sample-en", default_data_dir(None), limit)
    return expand_cases([dataset], resolve_set(perturbations), prompts, seed=0, group_size=group_size)


def test_all_perturbations_of_an_item_under_one_prompt_share_a_group():
    cases = _cases(10, "all", ["p0", "j0"], group_size=64)
    variants = len(resolve_set("all"))
    groups = defaultdict(list)
    for case in cases:
        groups[case.group].append(case)
    by_item_prompt = defaultdict(set)
    for case in cases:
        by_item_prompt[(case.item.id, case.prompt)].add(case.group)
    assert all(len(names) == 1 for names in by_item_prompt.values())
    assert all(len(members) <= 64 and len(members) % variants == 0 for members in groups.values())
    assert all(len({c.prompt for c in members}) == 1 for members in groups.values())
    # the run's order is unchanged: perturbation, then prompt, then item
    assert [c.perturbation for c in cases[:20]] == ["original"] * 20


def test_an_item_with_more_variants_than_the_group_size_is_split():
    cases = _cases(2, "all", ["p0"], group_size=5)
    groups = defaultdict(list)
    for case in cases:
        groups[case.group].append(case)
    assert max(len(members) for members in groups.values()) <= 5
    assert all(len({c.item.id for c in members}) == 1 for members in groups.values())
    assert sum(len(members) for members in groups.values()) == len(cases) == 2 * len(resolve_set("all"))


def test_the_default_run_keeps_its_groups_of_64_items():
    cases = _cases(None, "none", ["p0"], group_size=64)
    sizes = sorted({len([c for c in cases if c.group == g]) for g in {c.group for c in cases}})
    assert max(sizes) <= 64 and len({c.group for c in cases}) == -(-len(cases) // 64)


def test_an_item_a_perturbation_cannot_take_is_named(tmp_path):
    import json

    import pytest

    from medgate.perturbations import PerturbationError

    item = {"id": "q1", "dataset": "odd", "language": "en", "question": "Which?", "answer": "b",
            "options": [{"label": "AAAA", "text": "x"}, {"label": "ZZZZ", "text": "y"}, {"label": "b", "text": "z"}]}
    (tmp_path / "odd.jsonl").write_text(json.dumps(item) + "\n")
    dataset = load_dataset(str(tmp_path / "odd.jsonl"), tmp_path)
    with pytest.raises(PerturbationError, match=r"^add_nota_distractor on item odd/q1: cannot tell which label"):
        expand_cases([dataset], ["add_nota_distractor"], ["p0"], seed=0, group_size=64)
