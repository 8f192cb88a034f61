"""The HTML report in a real headless browser (Debian's chromium): it loads without console errors,
its script runs, the charts render, and a question holding `<script>` shows as text.

Skipped, with the reason, where chromium is not installed (`.ci/run` installs it in CI).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medgate.report.html import render_html
from medgate.report.svg import share_colour
from png_pixels import read_png
from test_readable_reports import rich_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                                "CI's .ci/run installs it)"),
]
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"]


def chromium(tmp_path: Path, page: Path, *arguments: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *arguments, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to the console or threw (chromium logs both as CONSOLE lines)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    baseline, current = rich_report()
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(current, baseline), encoding="utf-8")
    return path


def test_console_errors_would_be_seen(tmp_path):
    """The check below is not vacuous: a page that throws is caught by it."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>noSuchFunction();</script></body></html>")
    result = chromium(tmp_path, broken, "--dump-dom")
    assert any("noSuchFunction is not defined" in line for line in console_lines(result.stderr))


def test_report_loads_without_console_errors_and_renders_charts_and_rows(tmp_path, page):
    result = chromium(tmp_path, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    dom = result.stdout
    root = dom.split("<head>", 1)[0]
    assert 'data-ready="1"' in root and "data-js-errors" not in root  # the script ran to its end, error-free
    for kind in ("heatmap", "bars", "deltas"):
        assert f'<svg class="chart chart-{kind}"' in dom
    assert dom.count('class="heat-cell"') == 8  # rows: 2 datasets x 2 modes; columns: 2 perturbations
    rows = dom.split('<tbody id="case-rows">', 1)[1].split("</tbody>", 1)[0]
    assert rows.count("<tr") == 144  # every case fits under the display limit
    assert "Showing 144 of 144 matching cases (144 in all)." in dom


def test_a_script_in_a_question_renders_as_text(tmp_path, page):
    dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert 'data-pwned="1"' not in dom  # neither the flips table nor the script-built rows ran it
    escaped = "&lt;script&gt;document.documentElement.setAttribute('data-pwned','1')&lt;/script&gt;"
    cells = [cell for cell in dom.split("<td") if escaped in cell]
    assert len(cells) >= 1 + 3  # the flips table, and a case row per prompt of the hostile item


def test_screenshot_shows_the_report(tmp_path, page):
    """Keep a screenshot: it must be a real image with the heat map's colours in it, not a blank page."""
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1000,1400", "--hide-scrollbars")
    assert shot.is_file(), result.stderr[-2000:]
    pixels = read_png(shot)[:, :, :3].astype(int)
    assert pixels.shape == (1400, 1000, 3)
    not_white = (pixels.sum(axis=2) < 720).mean()
    assert 0.02 < not_white < 0.9
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    # every heat-map cell is filled with the colour of its value: find at least one of them on screen
    html = page.read_text(encoding="utf-8")
    colours = [_hsl_to_rgb(share_colour(value)) for value in _heat_values(html)]
    found = [c for c in colours if (np.abs(pixels - np.array(c)).sum(axis=2) <= 6).sum() > 200]
    assert found, f"none of the heat-map colours {colours} is on the screenshot"


def _heat_values(html: str) -> list[float]:
    svg = html.split('<svg class="chart chart-heatmap"', 1)[1].split("</svg>", 1)[0]
    return [float(part.split(": ", 1)[1].split("<", 1)[0]) for part in svg.split('class="heat-cell"')[1:]]


def _hsl_to_rgb(text: str) -> tuple[int, int, int]:
    hue, saturation, lightness = (float(v.strip(" %")) for v in text[4:-1].split(","))
    s, lum = saturation / 100, lightness / 100
    chroma = (1 - abs(2 * lum - 1)) * s
    x = chroma * (1 - abs((hue / 60) % 2 - 1))
    m = lum - chroma / 2
    r, g, b = [(chroma, x, 0), (x, chroma, 0), (0, chroma, x), (0, x, chroma), (x, 0, chroma), (chroma, 0, x)][
        int(hue // 60) % 6]
    return round((r + m) * 255), round((g + m) * 255), round((b + m) * 255)
