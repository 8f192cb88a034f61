"""The dataset registry: every entry is complete, consistent, and its mistakes are reported by name."""

import re
from pathlib import Path

import pytest

from medgate.datasets import registry
from medgate.datasets.converters import CONVERTERS
from medgate.datasets.registry import RegistryError, UnknownDataset, get_spec

REQUIRED_NAMES = {"medqa", "medmcqa", "pubmedqa", "mmlu-medical", "mmlu-anatomy", "mmlu-clinical-knowledge",
                  "mmlu-college-biology", "mmlu-college-medicine", "mmlu-medical-genetics",
                  "mmlu-professional-medicine", "headqa-es", "headqa-en", "sample-en", "sample-es"}
PINNED = re.compile(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/")


def test_registry_names_the_required_datasets_with_known_converters():
    specs = registry()
    assert REQUIRED_NAMES <= set(specs)
    for spec in specs.values():
        assert spec.converter in CONVERTERS, spec.name
        assert spec.license and spec.citation and spec.split


def test_upstream_files_are_pinned_and_checksummed():
    for spec in registry().values():
        if spec.bundled:
            continue
        for upstream in spec.files:
            assert upstream.sha256 and len(upstream.sha256) == 64
            assert upstream.urls, spec.name
            assert all(PINNED.match(url) for url in upstream.urls), upstream.urls


def test_registered_checksums_match_the_staged_upstream_files(shared_raw):
    from medgate.items import file_sha256

    for spec in registry().values():
        for upstream in [] if spec.bundled else spec.files:
            assert file_sha256(shared_raw / upstream.path) == upstream.sha256, upstream.path


def test_mmlu_medical_is_the_union_of_the_six_subjects():
    subjects = [s for name, s in registry().items() if name.startswith("mmlu-") and name != "mmlu-medical"]
    union = sorted((f for s in subjects for f in s.files), key=str)
    assert union == sorted(get_spec("mmlu-medical").files, key=str)


def test_language_twins_share_a_sampling_salt():
    assert get_spec("headqa-es").sampling_salt == get_spec("headqa-en").sampling_salt == "headqa"
    assert get_spec("headqa-dev-es").sampling_salt == "headqa-dev"
    assert get_spec("medqa").sampling_salt == "medqa"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownDataset) as error:
        get_spec("medqa-es")
    assert error.value.args[0].startswith("unknown dataset 'medqa-es'; known datasets: ")
    assert "headqa-es" in error.value.args[0] and "mmlu-anatomy" in error.value.args[0]


GOOD_ENTRY = """
[demo]
languages = ["en"]
split = "test"
converter = "medqa-jsonl"
license = "MIT"
citation = "Someone 2020"
files = [{ path = "demo/demo.jsonl", sha256 = "%s", urls = ["https://example.org/demo.jsonl"] }]
""" % ("a" * 64)


@pytest.mark.parametrize("old, new, message", [
    ('split = "test"\n', "", r"\[demo\]: split is required"),
    ('languages = ["en"]', 'languages = ["fr"]', r"\[demo\]: languages must be"),
    ('"a' + "a" * 63, '"A' + "a" * 63, r"\[demo\]: sha256 of demo/demo.jsonl must be 64 lowercase hex"),
    ("https://example.org", "http://example.org", r"urls of demo/demo.jsonl must be a list of https://"),
    ('path = "demo/', 'path = "../', r"path '../demo.jsonl' must be relative"),
    ('split = "test"', 'split = "test"\nsplits = 2', r"\[demo\]: unknown keys \['splits'\]"),
    (', urls = ["https://example.org/demo.jsonl"]', "", r"upstream file demo/demo.jsonl needs a sha256 and"),
])
def test_registry_mistakes_are_reported_by_entry(tmp_path, old, new, message):
    assert old in GOOD_ENTRY
    path = tmp_path / "registry.toml"
    path.write_text(GOOD_ENTRY.replace(old, new, 1))
    with pytest.raises(RegistryError, match=message):
        registry(path)


def test_a_shared_file_must_have_one_checksum(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text(GOOD_ENTRY + GOOD_ENTRY.replace("[demo]", "[demo-2]").replace("a" * 64, "b" * 64))
    with pytest.raises(RegistryError, match=r"\[demo\] and \[demo-2\] give demo/demo.jsonl different sha256"):
        registry(path)


def test_registry_is_valid_toml_or_says_so(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text("[demo\n")
    with pytest.raises(RegistryError, match=rf"{re.escape(str(path))}: not valid TOML"):
        registry(Path(path))
