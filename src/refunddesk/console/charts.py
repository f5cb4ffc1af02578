"""Geometry for the console's horizontal bar charts (templates draw them as inline SVG)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 520
LABEL_W = 150
VALUE_W = 50
ROW_H = 28
BAR_H = 18
TOP = 6
NAME_CHARS = 22


@dataclass(frozen=True, slots=True)
class HBar:
    label: str
    value: int
    y: float
    text_y: float
    width: float
    css: str


@dataclass(frozen=True, slots=True)
class HChart:
    name: str
    width: int
    height: int
    plot_left: int
    value_x: float
    bars: list[HBar]


def hbars(rows: list[tuple[str, int]], *, name: str, classes: list[str] | None = None) -> HChart:
    """One bar per row, scaled to the largest value (all-zero rows draw no bar)."""
    top = max((value for _, value in rows), default=0)
    plot = WIDTH - LABEL_W - VALUE_W
    bars = []
    for i, (label, value) in enumerate(rows):
        y = TOP + i * ROW_H
        short = label if len(label) <= NAME_CHARS else label[: NAME_CHARS - 1] + "\u2026"
        bars.append(
            HBar(
                label=short,
                value=value,
                y=y,
                text_y=y + BAR_H / 2 + 5,
                width=0.0 if top <= 0 else max(2.0, plot * value / top) if value else 0.0,
                css=(classes[i] if classes and i < len(classes) else "bar"),
            )
        )
    return HChart(
        name=name,
        width=WIDTH,
        height=TOP * 2 + ROW_H * len(rows),
        plot_left=LABEL_W,
        value_x=WIDTH - VALUE_W + 6,
        bars=bars,
    )
