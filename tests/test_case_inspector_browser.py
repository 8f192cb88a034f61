"""The case inspector and the at-a-glance views of reports written by real sessions, in headless chromium.

A page opened at `#case=<case id>` expands that case, as a click on its row does. Screenshots of each view
are kept in $MEDGATE_SCREENSHOTS when it is set (to look at them), else in the test's temporary folder.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from png_pixels import read_png
from session_reports import report_of
from test_html_browser import CHROMIUM, FLAGS, console_lines

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                                "CI's .ci/run installs it)"),
]
NO_CACHE = ("-p", "no:cacheprovider")
ANSWER_BLUE = (0x15, 0x65, 0xC0)  # the "answered" bars of the position chart (svg.position_chart)


def browse(tmp_path: Path, page: Path, fragment: str = "", *arguments: str):
    import subprocess

    url = page.as_uri() + (f"#{fragment}" if fragment else "")
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *arguments, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def dom_of(tmp_path: Path, page: Path, fragment: str = "") -> str:
    result = browse(tmp_path, page, fragment, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    root = result.stdout.split("<head>", 1)[0]
    assert 'data-ready="1"' in root and "data-js-errors" not in root
    return result.stdout


def screenshot(tmp_path: Path, page: Path, name: str, fragment: str = "", height: int = 5000) -> np.ndarray:
    """The page at 1200 px wide, tall enough to hold it unscrolled (headless chromium leaves what a scroll
    moved above the viewport blank in a screenshot); the file is kept for a person to look at."""
    shot = tmp_path / f"{name}.png"
    browse(tmp_path, page, fragment, f"--screenshot={shot}", f"--window-size=1200,{height}", "--hide-scrollbars")
    assert shot.is_file()
    keep = os.environ.get("MEDGATE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return read_png(shot)[:, :, :3].astype(int)


def inspector_of(dom: str, case_id: str) -> str:
    marker = f'<div class="inspector" data-case="{html.escape(case_id)}">'
    assert marker in dom, f"case {case_id} is not expanded"
    return dom.split(marker, 1)[1].split('<tr class="outcome-', 1)[0]  # up to the next case's row


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory, tiny_checkpoint) -> tuple[dict, Path]:
    """A real tiny run in both modes with its prompts recorded: the report and the page it wrote."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("tiny-session")
    for source in (root / "suites").glob("test_*.py"):
        shutil.copy(source, folder / source.name)
    (folder / "pytest.ini").write_text("[pytest]\n")
    completed = subprocess.run([sys.executable, "-m", "pytest", "--mode=both", "--record-prompts", "--report=run.json",
                                "--perturbations=shuffle_options",
                                "-q", *NO_CACHE], cwd=folder, capture_output=True, text=True, check=False)
    assert completed.returncode in (0, 1), completed.stdout[-2000:]
    from session_reports import read_report

    return read_report(folder / "run.json"), folder / "run.html"


def test_expanding_a_generation_case_shows_its_raw_output_parses_and_stop_reason(tmp_path, tiny_session):
    document, page = tiny_session
    case = next(c for c in document["cases"] if c["mode"] == "generate" and c["raw_output"].strip())
    dom = dom_of(tmp_path, page, "case=" + urllib.parse.quote(case["case_id"], safe=""))
    shown = inspector_of(dom, case["case_id"])
    raw = re.search(r'<pre class="raw-output">(.*?)</pre>', shown, re.S)
    assert raw is not None and html.unescape(raw.group(1)) == case["raw_output"]
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", shown))
    assert facts["stop reason"] == case["stop_reason"]
    assert facts["strict parse"] == (case["strict_answer"] or "none")
    assert facts["lenient parse"] == (case["lenient_answer"] or "none")
    assert facts["JSON-Schema valid"] == ("yes" if case["schema_valid"] else "no")
    assert html.unescape(re.search(r'<pre class="prompt-text">(.*?)</pre>', shown, re.S).group(1)) \
        == case["prompt_text"]
    gold_rows = re.findall(r'<tr class="gold"><td>(.*?)</td><td>(.*?)</td>', shown)
    assert gold_rows == [(case["gold_label"], html.escape(next(o["text"] for o in case["options_presented"]
                                                               if o["label"] == case["gold_label"]), quote=False))]
    siblings = shown.split('<table class="siblings">', 1)[1].split("</table>", 1)[0]
    same_item = [c for c in document["cases"] if (c["dataset"], c["item_id"]) == (case["dataset"], case["item_id"])]
    assert siblings.split("<tbody>", 1)[1].count("<tr>") == len({c["perturbation"] for c in same_item})
    assert siblings.count('class="sib') == len(same_item) and siblings.count('class="sib current"') == 1
    pixels = screenshot(tmp_path, page, "inspector-generate", "case=" + urllib.parse.quote(case["case_id"], safe=""))
    assert (pixels.sum(axis=2) < 720).mean() > 0.01


def test_expanding_a_loglik_case_shows_option_probabilities_that_sum_to_one(tmp_path, tiny_session):
    document, page = tiny_session
    case = next(c for c in document["cases"] if c["mode"] == "loglik" and c["perturbation"] != "original")
    dom = dom_of(tmp_path, page, "case=" + urllib.parse.quote(case["case_id"], safe=""))
    shown = inspector_of(dom, case["case_id"])
    probabilities = [float(p) for p in re.findall(r'data-prob="([^"]+)"', shown)]
    labels = [o["label"] for o in case["options_presented"]]
    assert len(probabilities) == len(labels) >= 2
    assert abs(sum(probabilities) - 1.0) < 1e-6
    scores = [case["scores"][label] for label in labels]
    top = max(scores)
    expected = [math.exp(s - top) / sum(math.exp(t - top) for t in scores) for s in scores]
    assert probabilities == pytest.approx(expected, abs=1e-8)
    chosen = re.findall(r"<tr(?: class=\"gold\"|)><td>([^<]*)</td><td>[^<]*</td><td>[^<]*</td><td>chosen</td>", shown)
    assert chosen == [case["predicted_label"]]
    assert labels[int(np.argmax(probabilities))] == case["predicted_label"]
    screenshot(tmp_path, page, "inspector-loglik", "case=" + urllib.parse.quote(case["case_id"], safe=""))


def test_the_glance_views_render_from_a_real_session(tmp_path, tiny_session):
    document, page = tiny_session
    dom = dom_of(tmp_path, page)
    glance = dom.split('<section id="at-a-glance">', 1)[1].split("</section>", 1)[0]
    datasets_modes = {(c["dataset"], c["mode"]) for c in document["cases"]}
    assert glance.count('class="chart chart-positions"') == len(datasets_modes)
    assert "Accuracy per prompt" in glance and "Accuracy per subject" in glance
    assert "Compliance failures" in glance
    pixels = screenshot(tmp_path, page, "at-a-glance", height=3000)
    assert _blue_pixels(pixels) > 500  # the answered bars are drawn


def _blue_pixels(pixels: np.ndarray) -> int:
    return int((np.abs(pixels - np.array(ANSWER_BLUE)).sum(axis=2) <= 12).sum())


@pytest.fixture(scope="module")
def smollm2_generation(tmp_path_factory, shared_raw) -> tuple[dict, Path]:
    """SmolLM2-135M-Instruct in generate mode on MedQA: it answers "A" to nearly every question."""
    import subprocess
    import sys

    checkpoint = Path(os.environ.get("MEDGATE_SMOLLM2", ""))
    if not (checkpoint / "config.json").is_file():
        pytest.skip("SmolLM2 not found: set MEDGATE_SMOLLM2 to build/smollm2 (made by ../shared/models/smollm2.sh)")
    root = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("smollm2-session")
    for source in (root / "suites").glob("test_*.py"):
        shutil.copy(source, folder / source.name)
    (folder / "pytest.ini").write_text("[pytest]\n")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", f"--model={checkpoint}", f"--data-dir={shared_raw}", "--dataset=medqa",
         "--limit=25", "--mode=generate", "--perturbations=shuffle_options", "--report=smol.json", "-q", *NO_CACHE],
        cwd=folder, capture_output=True, text=True, check=False)
    assert completed.returncode in (0, 1), completed.stdout[-3000:]
    from session_reports import read_report

    return read_report(folder / "smol.json"), folder / "smol.html"


def test_the_position_chart_shows_a_model_that_always_answers_a(tmp_path, smollm2_generation):
    document, page = smollm2_generation
    answered = [c.get("lenient_answer") for c in document["cases"]]
    assert answered.count("A") >= 0.8 * len(answered)  # the premise: this run really answers A
    dom = dom_of(tmp_path, page)
    chart = dom.split('<svg class="chart chart-positions"', 1)[1].split("</svg>", 1)[0]
    chosen = dict(re.findall(r'class="bar-chosen" data-position="(\w)" data-share="([\d.]+)"', chart))
    gold = dict(re.findall(r'class="bar-gold" data-position="(\w)" data-share="([\d.]+)"', chart))
    assert float(chosen["A"]) == pytest.approx(answered.count("A") / len(answered), abs=1e-6)
    assert all(float(share) < 0.2 for position, share in chosen.items() if position != "A")
    assert float(gold["A"]) < 0.5  # gold is spread over the positions; the answers are not
    pixels = screenshot(tmp_path, page, "position-always-a", height=2400)
    blue = np.abs(pixels - np.array(ANSWER_BLUE)).sum(axis=2) <= 12
    columns = np.where(blue.any(axis=0))[0]
    tallest = max(blue[:, x].sum() for x in columns)
    assert tallest > 100  # the A bar: 150 px for 100%, drawn on screen


@pytest.mark.parametrize(("fragment", "matching"), [
    ("case=%", "all"), ("case=%E0%A4%A", "all"),  # not decodable: the address is ignored
    ("case=a%0Ab%22%5D", "none"),  # decodable, a case id no selector could hold: searched for, found nowhere
])
def test_a_malformed_case_address_still_renders_the_table(tmp_path, tiny_session, fragment, matching):
    document, page = tiny_session
    dom = dom_of(tmp_path, page, fragment)  # ready, and no script error on the console
    shown = re.search(r"Showing (\d+) of (\d+) matching cases \((\d+) in all\)", dom)
    assert shown is not None
    assert int(shown.group(2)) == (int(shown.group(3)) if matching == "all" else 0)
