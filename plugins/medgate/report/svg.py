"""Inline SVG charts for the HTML report, drawn in Python: no chart library, no network, and every
label passes through `html.escape`, so item or dataset names cannot inject markup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Delta:
    label: str
    delta: float
    low: float | None
    high: float | None
    significant: bool


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(text)}</text>'


def _open(kind: str, width: float, height: float, title: str) -> str:
    return (f'<svg class="chart chart-{kind}" role="img" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" aria-label="{escape(title)}"><title>{escape(title)}</title>')


def share_colour(value: float) -> str:
    """Red (0) through amber to green (1), light enough for dark text."""
    hue = max(0.0, min(1.0, value)) * 120.0
    return f"hsl({hue:.0f}, 65%, 62%)"


LABEL_CHARS = 64  # longer labels are shortened on the chart; the full text is in each mark's tooltip
CHAR_WIDTH = 7.0  # about right for 12px system-ui


def _label_width(labels: Sequence[str]) -> float:
    return 16.0 + CHAR_WIDTH * min(LABEL_CHARS, max((len(label) for label in labels), default=4))


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _fit(width: float, title: str) -> float:
    return max(width, 20.0 + CHAR_WIDTH * len(title))


def heat_map(rows: Sequence[str], columns: Sequence[str], values: dict[tuple[str, str], float], title: str) -> str:
    cell_w, cell_h, top = 96.0, 30.0, 46.0
    left = _label_width(rows)
    width = _fit(left + cell_w * max(1, len(columns)) + 10, title)
    height = top + cell_h * max(1, len(rows)) + 10
    parts = [_open("heatmap", width, height, title), _text(10, 16, title, extra='font-weight="bold"')]
    for j, column in enumerate(columns):
        parts.append(_text(left + cell_w * (j + 0.5), top - 8, column if len(column) <= 13 else column[:12] + "…",
                           "middle"))
    for i, row in enumerate(rows):
        y = top + cell_h * i
        parts.append(_text(left - 8, y + cell_h / 2 + 4, _short(row), "end"))
        for j, column in enumerate(columns):
            x = left + cell_w * j
            value = values.get((row, column))
            fill = "#eeeeee" if value is None else share_colour(value)
            label = "n/a" if value is None else f"{value:.3f}"
            parts.append(f'<rect class="heat-cell" x="{x:.1f}" y="{y:.1f}" width="{cell_w - 2:.1f}" '
                         f'height="{cell_h - 2:.1f}" fill="{fill}"><title>{escape(f"{row} / {column}: {label}")}'
                         f'</title></rect>')
            parts.append(_text(x + cell_w / 2 - 1, y + cell_h / 2 + 3, label, "middle"))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: Sequence[Bar], title: str) -> str:
    """Horizontal bars on a 0-1 scale with their 95% intervals as whiskers."""
    row_h, top, plot_w = 24.0, 40.0, 320.0
    left = _label_width([b.label for b in bars])
    width = _fit(left + plot_w + 70, title)
    height = top + row_h * max(1, len(bars)) + 24
    parts = [_open("bars", width, height, title), _text(10, 16, title, extra='font-weight="bold"')]
    for tick in (0.0, 0.5, 1.0):
        x = left + plot_w * tick
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6:.1f}" x2="{x:.1f}" y2="{height - 20:.1f}" stroke="#cccccc"/>')
        parts.append(_text(x, height - 6, f"{tick:g}", "middle"))
    for i, bar in enumerate(bars):
        y = top + row_h * i
        parts.append(_text(left - 8, y + row_h / 2 + 4, _short(bar.label), "end"))
        parts.append(f'<rect class="bar" x="{left:.1f}" y="{y + 4:.1f}" width="{plot_w * bar.value:.1f}" '
                     f'height="{row_h - 8:.1f}" fill="{share_colour(bar.value)}"><title>'
                     f'{escape(f"{bar.label}: {bar.value:.3f}")}</title></rect>')
        if bar.low is not None and bar.high is not None:
            x1, x2, mid = left + plot_w * bar.low, left + plot_w * bar.high, y + row_h / 2
            parts.append(f'<line class="whisker" x1="{x1:.1f}" y1="{mid:.1f}" x2="{x2:.1f}" y2="{mid:.1f}" '
                         'stroke="#333333" stroke-width="1.5"/>')
        parts.append(_text(left + plot_w + 8, y + row_h / 2 + 4, f"{bar.value:.3f}"))
    parts.append("</svg>")
    return "".join(parts)


def delta_chart(deltas: Sequence[Delta], title: str) -> str:
    """A forest plot: each cell's change with its paired bootstrap interval; significant ones in colour."""
    row_h, top, plot_w = 22.0, 40.0, 360.0
    left = _label_width([d.label for d in deltas])
    reach = max([abs(v) for d in deltas for v in (d.delta, d.low, d.high) if v is not None] + [0.05])
    width = _fit(left + plot_w + 90, title)
    height = top + row_h * max(1, len(deltas)) + 24

    def x_of(value: float) -> float:
        return left + plot_w * (value + reach) / (2 * reach)

    parts = [_open("deltas", width, height, title), _text(10, 16, title, extra='font-weight="bold"')]
    for tick in (-reach, 0.0, reach):
        x = x_of(tick)
        colour = "#555555" if tick == 0 else "#cccccc"
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6:.1f}" x2="{x:.1f}" y2="{height - 20:.1f}" stroke="{colour}"/>')
        parts.append(_text(x, height - 6, f"{tick * 100:+.1f} pp" if tick else "0", "middle"))
    for i, d in enumerate(deltas):
        y = top + row_h * i + row_h / 2
        colour = ("#c62828" if d.delta < 0 else "#2e7d32") if d.significant else "#777777"
        parts.append(_text(left - 8, y + 4, _short(d.label), "end"))
        if d.low is not None and d.high is not None:
            parts.append(f'<line class="interval" x1="{x_of(d.low):.1f}" y1="{y:.1f}" x2="{x_of(d.high):.1f}" '
                         f'y2="{y:.1f}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<circle class="delta" cx="{x_of(d.delta):.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>'
                     f'{escape(f"{d.label}: {d.delta * 100:+.1f} pp")}</title></circle>')
        parts.append(_text(left + plot_w + 8, y + 4, f"{d.delta * 100:+.1f} pp" + (" *" if d.significant else "")))
    parts.append("</svg>")
    return "".join(parts)


def position_chart(names: Sequence[str], chosen: Sequence[float], gold: Sequence[float], title: str) -> str:
    """Per option position, the share of answers there (solid) beside the share of gold answers (outlined)."""
    group_w, bar_w, top, plot_h, left = 56.0, 22.0, 44.0, 150.0, 44.0
    width = _fit(left + group_w * max(1, len(names)) + 20, title)
    height = top + plot_h + 40
    parts = [_open("positions", width, height, title), _text(10, 16, title, extra='font-weight="bold"')]
    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f'<line x1="{left - 4:.1f}" y1="{y:.1f}" x2="{width - 10:.1f}" y2="{y:.1f}" stroke="#dddddd"/>')
        parts.append(_text(left - 8, y + 4, f"{tick:.0%}", "end"))
    for i, name in enumerate(names):
        x = left + group_w * i + 4
        for offset, share, kind, style in ((0.0, chosen[i], "chosen", 'fill="#1565c0"'),
                                           (bar_w + 2, gold[i], "gold", 'fill="#ffffff" stroke="#e08a00" '
                                                                        'stroke-width="2"')):
            h = plot_h * share
            parts.append(f'<rect class="bar-{kind}" data-position="{escape(name)}" data-share="{share:.6f}" '
                         f'x="{x + offset:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'{style}><title>{escape(f"{name}: {share:.1%} {kind}")}</title></rect>')
        parts.append(_text(x + bar_w, top + plot_h + 16, name, "middle"))
        parts.append(_text(x + bar_w / 2, top + plot_h - plot_h * chosen[i] - 4, f"{chosen[i]:.0%}", "middle"))
    legend_y = height - 6
    parts.append(f'<rect x="{left:.1f}" y="{legend_y - 9:.1f}" width="10" height="10" fill="#1565c0"/>')
    parts.append(_text(left + 14, legend_y, "answered"))
    parts.append(f'<rect x="{left + 90:.1f}" y="{legend_y - 9:.1f}" width="10" height="10" fill="#ffffff" '
                 'stroke="#e08a00" stroke-width="2"/>')
    parts.append(_text(left + 104, legend_y, "gold"))
    parts.append("</svg>")
    return "".join(parts)
