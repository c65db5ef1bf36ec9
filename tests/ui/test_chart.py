"""The overview chart's geometry: pure arithmetic, no browser."""

from __future__ import annotations

from jobhooks.ui.chart import HEIGHT, TOP, compact, nice_ceiling, stacked_bars


def test_the_axis_ends_at_a_round_number() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 2, 3, 7, 10, 11, 180, 2001)] == [
        1,
        1,
        2,
        5,
        10,
        10,
        20,
        200,
        5000,
    ]
    assert [compact(v) for v in (0, 5, 2500, 10_000, 1_000_000)] == ["0", "5", "2.5k", "10k", "1M"]


def test_bars_stack_results_from_the_bottom_and_scale_to_the_tallest() -> None:
    chart = {
        "step": 60,
        "bars": [
            {"start": 0, "counts": {}},
            {"start": 60, "counts": {2: 6, 4: 4}},
            {"start": 120, "counts": {3: 5}},
            {"start": 180, "counts": {}},
        ],
        "totals": {2: 6, 3: 5, 4: 4},
    }
    figure = stacked_bars(chart)
    success, failure, warning = figure["segments"]
    assert (success["css"], failure["css"], warning["css"]) == ("success", "failure", "warning")
    bottom = figure["bottom"]
    assert success["y"] + success["height"] == bottom
    assert failure["y"] + failure["height"] == success["y"]
    assert failure["y"] == TOP  # 10 of a 10-high axis
    assert warning["height"] == (bottom - TOP) / 2
    assert success["title"] == failure["title"] == "00:01 to 00:02 UTC: 6 success, 4 failure"
    assert [row["total"] for row in figure["table"]] == [10, 5]
    ticks = [t["label"] for t in figure["x_ticks"]]
    assert ticks == ["-4 min", "-3 min", "-2 min", "-1 min", "now"]
    week = stacked_bars({"step": 3600, "bars": [{"start": 0, "counts": {}}] * 168, "totals": {}})
    assert [t["label"] for t in week["x_ticks"]] == [*(f"-{d} d" for d in range(7, 0, -1)), "now"]
    assert figure["height"] == HEIGHT
    assert figure["total"] == 15
