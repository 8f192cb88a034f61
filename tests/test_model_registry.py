"""The model registry as the README documents it, and where baselines of odd model names are saved."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from medgate.compare.reports import ReportError, baselines_dir, check_baseline_name, save_baseline
from medgate.models import model_registry, resolve_model


def readme_aliases() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Models\n", 1)[1].split("\n#", 1)[0]
    fields = {"path", "hub_id", "revision", "kind", "description"}  # an entry's keys, named there too
    names = set(re.findall(r"`([a-z0-9][a-z0-9.-]*)`", section)) - fields
    return {name for name in names if not re.search(r"\.(json|toml|jinja|safetensors|py)$", name)}


def test_every_alias_the_readme_names_resolves(monkeypatch):
    monkeypatch.setenv("MEDGATE_MODEL_MARMOKA_8B", "org/marmoka-8b")  # shipped unfilled
    named = readme_aliases()
    assert {"llama-3.1-8b-instruct", "ultramedical-3.1-8b"} <= named
    assert named == set(model_registry())
    for alias in named:
        ref = resolve_model(alias)
        assert ref.alias == alias and ref.kind in ("tiny", "hub")
    assert resolve_model("llama-3.1-8b-instruct").hub_id == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("name, saved", [("v1", "v1.json"), ("v1.json", "v1.json"),
                                         ("release-2.3", "release-2.3.json")])
def test_a_baseline_name_with_json_is_not_doubled(tmp_path, name, saved):
    path = save_baseline({"status": "passed", "cases": []}, tmp_path, "tiny", check_baseline_name(name))
    assert path == tmp_path / "reports" / "baselines" / "tiny" / saved and path.is_file()


@pytest.mark.parametrize("alias", ["/x/sub/..", "/x/sub/.", "..", "../..", "/x/../", "/x/.hidden"])
def test_baselines_of_any_model_name_stay_under_reports_baselines(tmp_path, alias):
    folder = baselines_dir(tmp_path, alias)
    assert folder.parent == tmp_path / "reports" / "baselines" and folder.name not in ("", ".", "..")
    path = save_baseline({"status": "passed", "cases": []}, tmp_path, alias, "v1")
    assert path.resolve().is_relative_to((tmp_path / "reports" / "baselines").resolve())


@pytest.mark.parametrize("name", ["../v1", ".json", "v1/x", "..", "v1.json.json", "x" * 101])
def test_bad_baseline_names_are_refused(name):
    with pytest.raises(ReportError, match="baseline name"):
        check_baseline_name(name)


def test_a_failed_run_saves_under_a_new_name_but_never_replaces_a_baseline(tmp_path):
    saved = save_baseline({"status": "passed", "cases": [], "run_id": "good"}, tmp_path, "tiny", "v1")
    with pytest.raises(ReportError, match="a failed run does not replace the baseline"):
        save_baseline({"status": "failed", "cases": [], "run_id": "regressed"}, tmp_path, "tiny", "v1")
    assert '"good"' in saved.read_text()
    assert save_baseline({"status": "failed", "cases": []}, tmp_path, "tiny", "v2").is_file()
    save_baseline({"status": "passed", "cases": [], "run_id": "better"}, tmp_path, "tiny", "v1")
    assert '"better"' in saved.read_text()
