"""The overview's chart: completions per time slot, stacked by result, as SVG geometry.

Pure arithmetic; the template draws the rectangles, so the chart needs no
script and no library.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["RESULTS", "compact", "nice_ceiling", "stacked_bars"]

RESULTS = (
    (2, "success", "Success"),
    (3, "warning", "Warning"),
    (4, "failure", "Failure"),
    (0, "other", "Unknown"),
    (1, "other", "In process"),
)
"""(job result, CSS class, label), stacked from the bottom."""

WIDTH, HEIGHT = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 60, 8, 10, 26


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5 x 10^k that is at least ``value`` (1 for nothing)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if factor * power >= value:
            return int(factor * power)
    return int(10 * power)


def compact(value: float) -> str:
    """An axis label of at most four characters: ``5``, ``2.5k``, ``10k``, ``1M``."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:g}"


def _clock(moment: float, step: int) -> str:
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%a %H:%M" if step >= 3600 else "%H:%M")


def _relative(seconds: float) -> str:
    if seconds <= 0:
        return "now"
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"-{seconds // 86400:.0f} d"
    if seconds >= 3600:
        return f"-{seconds / 3600:.0f} h"
    return f"-{seconds / 60:.0f} min"


def stacked_bars(chart: dict[str, Any]) -> dict[str, Any]:
    """Rectangles, axis ticks and a legend for ``store.dashboard``'s chart data."""
    bars = chart["bars"]
    step = int(chart["step"])
    slots = max(1, len(bars))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot_width = plot_width / slots
    bar_width = max(1.0, slot_width * 0.78)
    peak = nice_ceiling(max((sum(bar["counts"].values()) for bar in bars), default=0))
    segments = []
    table = []
    for index, bar in enumerate(bars):
        counts = bar["counts"]
        total = sum(counts.values())
        if not total:
            continue
        x = LEFT + index * slot_width + (slot_width - bar_width) / 2
        base = float(TOP + plot_height)
        parts = []
        for result, css, label in RESULTS:
            count = counts.get(result, 0)
            if not count:
                continue
            height = count / peak * plot_height
            base -= height
            segments.append(
                {
                    "x": round(x, 2),
                    "y": round(base, 2),
                    "width": round(bar_width, 2),
                    "height": round(max(height, 0.5), 2),
                    "css": css,
                }
            )
            parts.append(f"{count} {label.lower()}")
        start = bar["start"]
        title = f"{_clock(start, step)} to {_clock(start + step, step)} UTC: {', '.join(parts)}"
        for segment in segments[len(segments) - len(parts) :]:
            segment["title"] = title
        table.append({"start": start, "counts": counts, "total": total})
    y_ticks = [
        {"y": round(TOP + plot_height * (1 - fraction), 2), "label": compact(peak * fraction)}
        for fraction in (0, 0.5, 1)
    ]
    span = slots * step
    days = span // 86400
    divisions = days if span % 86400 == 0 and days > 1 else 4
    x_ticks = []
    for index in range(divisions + 1):
        offset = span * index / divisions
        x_ticks.append(
            {
                "x": round(LEFT + plot_width * index / divisions, 2),
                "label": _relative(span - offset),
                "anchor": "start" if index == 0 else "end" if index == divisions else "middle",
            }
        )
    totals = chart["totals"]
    legend = [
        {"css": css, "label": label, "count": totals.get(result, 0)}
        for result, css, label in RESULTS
        if totals.get(result, 0) or result in (2, 3, 4)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": TOP + plot_height,
        "segments": segments,
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
        "legend": legend,
        "table": table,
        "total": sum(totals.values()),
        "step": step,
    }
