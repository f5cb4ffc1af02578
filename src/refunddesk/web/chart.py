"""Geometry for the server-rendered stacked bar chart (the template draws it as inline SVG)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from refunddesk.reporting.service import STATUS_ORDER, TenantCounts

WIDTH = 760
LABEL_W = 190
TOTAL_W = 60
ROW_H = 30
BAR_H = 20
TOP = 8
AXIS_H = 26
NAME_CHARS = 26


@dataclass(frozen=True, slots=True)
class Segment:
    x: float
    width: float
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class Bar:
    name: str
    label: str
    y: float
    text_y: float
    total: int
    total_x: float
    segments: list[Segment]


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_bottom: int
    axis_y: int
    bars: list[Bar]
    ticks: list[Tick]


def nice_step(maximum: int, target_ticks: int = 5) -> int:
    """A round step (1, 2, 5 x 10^n) giving about target_ticks ticks up to maximum."""
    if maximum <= 0:
        return 1
    raw = maximum / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        step = int(factor * magnitude)
        if step >= raw:
            return max(step, 1)
    return int(10 * magnitude)


def shorten(name: str, limit: int = NAME_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "\u2026"


def stacked_bars(rows: list[TenantCounts]) -> Chart:
    """One horizontal bar per tenant, stacked by status in lifecycle order."""
    plot_w = WIDTH - LABEL_W - TOTAL_W
    top_total = max((r.total for r in rows), default=0)
    step = nice_step(top_total)
    scale_max = max(step * math.ceil(top_total / step), 1)
    bars = []
    for index, row in enumerate(rows):
        y = TOP + index * ROW_H + (ROW_H - BAR_H) / 2
        x = float(LABEL_W)
        segments = []
        for status in STATUS_ORDER:
            count = row.counts.get(str(status), 0)
            if count:
                width = plot_w * count / scale_max
                segments.append(Segment(round(x, 2), round(width, 2), str(status), count))
                x += width
        bars.append(
            Bar(
                name=row.name,
                label=shorten(row.name),
                y=round(y, 2),
                text_y=round(y + BAR_H / 2, 2),
                total=row.total,
                total_x=round(x + 6, 2),
                segments=segments,
            )
        )
    plot_bottom = TOP + len(rows) * ROW_H
    ticks = [
        Tick(round(LABEL_W + plot_w * value / scale_max, 2), value)
        for value in range(0, scale_max + 1, step)
    ]
    return Chart(
        width=WIDTH,
        height=plot_bottom + AXIS_H,
        plot_left=LABEL_W,
        plot_top=TOP,
        plot_bottom=plot_bottom,
        axis_y=plot_bottom + 18,
        bars=bars,
        ticks=ticks,
    )
