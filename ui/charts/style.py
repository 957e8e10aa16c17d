"""What every chart shares: the ``Figure`` a tab shows, one palette, standard heights, labels a room can read.

Sized for a projector (1280x720): no chart is shorter than ``MIN_HEIGHT``, labels are 14 px, and no text is
drawn on top of marks (numbers live in tooltips and takeaways).
"""
from __future__ import annotations

from dataclasses import dataclass

import altair as alt

# One colour per meaning, the same on every tab: float is always blue and quantized always orange.
FLOAT = "#4c78a8"
QUANTIZED = "#f58518"
QUANTIZED_TEXT = "#b35806"  # a darker orange that still reads as text on a white page
PER_ROW = "#54a24b"  # the per-tensor scheme is drawn in QUANTIZED
ACCENT = "#e45756"  # what the eye should land on: grid levels, a range's ends, errors, the loss cliff
SCALE = "#72b7b2"  # run-time activation scales
INT32_SUM = "#9d755d"  # the integer accumulator
ZERO = "#888888"
REFERENCE = "#555555"  # a line to compare against, an unknown word's outline
REAL_INT8 = "black"

MODEL_COLORS = alt.Scale(domain=["float", "quantized"], range=[FLOAT, QUANTIZED])

MIN_HEIGHT = 180  # a projector at 1280x720 still shows the axes and labels
HEIGHT = 240
TALL = 300  # angled labels, many groups or two legends
BAR_PX = 56  # per bar of a horizontal bar chart: a bar and its gap, with a 14 px label beside it


@dataclass(frozen=True)
class Figure:
    chart: alt.TopLevelMixin
    takeaway: str  # one sentence a student can read the chart's point from alone


def readable(chart) -> alt.TopLevelMixin:
    """Labels a class can read from the back of a room: 14 px axis labels, long names not cut short."""
    return chart.configure_axis(labelFontSize=14, titleFontSize=15, labelLimit=260).configure_legend(
        labelFontSize=14, titleFontSize=14, labelLimit=260).configure_title(fontSize=16)


def rgba(color: str, alpha: float) -> str:
    """A ``#rrggbb`` colour made see-through, for shading behind text."""
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha:.2f})"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


