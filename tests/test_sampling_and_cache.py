"""Seeded, stratified --limit and the converted-items cache."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from medgate.datasets import load_dataset, registry, spec_paths
from medgate.datasets.item_cache import cache_key, entry_path
from medgate.datasets.sampling import stratified_sample
from medgate.items import Item, Option, file_sha256


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))


def make_items(subjects: dict[str, int]) -> list[Item]:
    options = (Option("A", "x"), Option("B", "y"), Option("C", "z"))
    return [Item(f"{subject}-{n}", "demo", "en", "q?", options, "A", subject=subject)
            for subject, count in subjects.items() for n in range(count)]


def test_limit_is_proportional_to_subject_sizes():
    items = make_items({"dental": 600, "surgery": 300, "skin": 100})
    chosen = stratified_sample(items, 50, seed=0, salt="demo")
    assert Counter(i.subject for i in chosen) == {"dental": 30, "surgery": 15, "skin": 5}
    assert chosen == sorted(chosen, key=items.index)  # kept in file order


def test_same_seed_same_sample_other_seed_other_sample():
    items = make_items({"a": 400, "b": 400})
    first, again = stratified_sample(items, 40, 0, "demo"), stratified_sample(items, 40, 0, "demo")
    other = stratified_sample(items, 40, 1, "demo")
    assert first == again and first != other
    assert Counter(i.subject for i in other) == Counter(i.subject for i in first)


def test_limit_above_the_size_keeps_everything():
    items = make_items({"a": 5})
    assert stratified_sample(items, 50, 0, "demo") == items


SAMPLE_IDS = """
import json, sys
from medgate.datasets import load_dataset
from pathlib import Path
print(json.dumps([i.id for i in load_dataset(sys.argv[1], Path(sys.argv[2]), limit=7, seed=5).items]))
"""


def test_sample_is_identical_in_other_processes_whatever_the_hash_seed(tmp_path):
    in_process = [i.id for i in load_dataset("sample-en", tmp_path, limit=7, seed=5).items]
    seen = []
    for hash_seed in ("1", "999"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        output = subprocess.run([sys.executable, "-c", SAMPLE_IDS, "sample-en", str(tmp_path)], env=env,
                                capture_output=True, text=True, check=True).stdout
        seen.append(json.loads(output))
    assert seen == [in_process, in_process] and len(in_process) == 7


def test_language_twins_sample_the_same_questions(tmp_path):
    english = load_dataset("sample-en", tmp_path, limit=10, seed=2).items
    spanish = load_dataset("sample-es", tmp_path, limit=10, seed=2).items
    assert [i.pair_id for i in english] == [i.pair_id for i in spanish]


def test_headqa_twins_sample_the_same_questions(shared_raw):
    english = load_dataset("headqa-en", shared_raw, limit=60, seed=9).items
    spanish = load_dataset("headqa-es", shared_raw, limit=60, seed=9).items
    assert [i.pair_id for i in english] == [i.pair_id for i in spanish]
    population = Counter(i.subject for i in load_dataset("headqa-es", shared_raw).items)
    chosen = Counter(i.subject for i in spanish)
    assert set(chosen) == set(population) and sum(chosen.values()) == 60
    assert all(abs(chosen[s] - 60 * population[s] / sum(population.values())) < 1 for s in population)


def cache_entry(name: str, data_dir: Path) -> Path:
    spec = registry()[name]
    return entry_path(spec, cache_key(spec, [file_sha256(p) for p in spec_paths(spec, data_dir)]))


def test_warm_load_reads_the_cache_and_gives_the_same_items(shared_raw):
    cold = load_dataset("headqa-es", shared_raw)
    entry = cache_entry("headqa-es", shared_raw)
    assert entry.is_file()
    warm = load_dataset("headqa-es", shared_raw)
    assert warm.items == cold.items and warm.provenance == cold.provenance
    assert list(entry.parent.iterdir()) == [entry]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage"])
def test_corrupt_cache_entry_is_rebuilt_not_trusted(tmp_path, damage):
    cold = load_dataset("sample-es", tmp_path)
    entry = cache_entry("sample-es", tmp_path)
    data = entry.read_bytes()
    damaged = {"truncate": data[: len(data) // 2],
               "edit": data.replace(b'"answer":"E"', b'"answer":"A"', 1),
               "garbage": b"\x00\x01 not json"}[damage]
    assert damaged != data
    entry.write_bytes(damaged)
    assert load_dataset("sample-es", tmp_path).items == cold.items
    assert entry.read_bytes() == data  # rewritten


def test_cache_key_follows_the_file_bytes_and_the_dataset():
    spec = registry()["mmlu-anatomy"]
    key = cache_key(spec, [spec.files[0].sha256])
    assert cache_key(spec, ["0" * 64]) != key
    assert cache_key(registry()["mmlu-medical"], [f.sha256 for f in registry()["mmlu-medical"].files]) != key
