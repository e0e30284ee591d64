"""Server-drawn SVG charts: honest axes, escaped labels, values as text."""

from __future__ import annotations

import re

import pytest

from taxaddr.oversight import charts


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (0, ["0", "1", "2", "3", "4"]),
        (3, ["0", "1", "2", "3", "4"]),
        (5, ["0", "2", "4", "6", "8"]),
        (13, ["0", "5", "10", "15", "20"]),
        (1234, ["0", "500", "1000", "1500", "2000"]),
    ],
)
def test_daily_axis_labels_sit_on_their_gridlines(top: int, ticks: list[str]) -> None:
    svg = charts.daily_bars(["2026-11-01"], {"disclosed": [top]}, {}, title="t")
    assert re.findall(r'class="tick">(\d+)<', svg) == ticks
    bar = re.search(r'height="([\d.]+)" fill="[^"]+" data-series="disclosed"', svg)
    assert bar is not None
    # the bar's height is its share of the axis maximum (plot height 176)
    assert float(bar.group(1)) == pytest.approx(176 * top / int(ticks[-1]), abs=0.06)


def test_labels_are_escaped_and_values_written() -> None:
    svg = charts.horizontal_bars([("<script>x</script>", 3), ("B&C", 1)], title="a<b")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "B&amp;C" in svg
    assert re.findall(r'class="value">(\d+)<', svg) == ["3", "1"]
    assert 'aria-label="a&lt;b"' in svg


def test_empty_charts_say_so() -> None:
    assert "nothing in this period" in charts.horizontal_bars([], title="t")
    assert "data-value" not in charts.daily_bars([], {"disclosed": []}, {}, title="t")
