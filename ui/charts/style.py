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
# One colour per weight-rounding scheme (``wlm.low_bits.SCHEMES``): per tensor in the quantized orange; a zero point
# darkens its scheme's own colour, so the symmetric and asymmetric forms of one granularity read as one family.
SCHEME_COLORS = {
    "per-tensor": QUANTIZED,
    "per-row": PER_ROW,
    "per-group": "#e7298a",  # a magenta
    "per-row-asym": "#2e6b27",  # a dark green
    "per-group-asym": "#8e0152",  # a dark magenta
}
ACCENT = "#e45756"  # what the eye should land on: grid levels, a range's ends, errors, the loss cliff
SCALE = "#72b7b2"  # run-time activation scales
INT32_SUM = "#9d755d"  # the integer accumulator
ZERO = "#888888"
REFERENCE = "#555555"  # a line to compare against, an unknown word's outline
REAL_INT8 = "black"

MODEL_COLORS = alt.Scale(domain=["float", "quantized"], range=[FLOAT, QUANTIZED])

# One colour per variant and engine, the same in every chart (bars, thread lines, trade-off points, KL): the float
# family is blue, the int8 variants orange to rust, ONNX Runtime's two models purple.
VARIANT_COLORS = {
    "fp32": FLOAT,
    "float16": "#6baed6",  # a sky blue: float weights in half the bits
    "tutorial": QUANTIZED,
    "per-channel": "#a63603",  # a dark rust
    "int8+emb8": "#fdae6b",  # a pale orange
    "int8+emb4": "#e7ba52",  # a mustard
    "onnxruntime fp32": "#9e9ac8",  # a pale purple
    "onnxruntime int8": "#54278f",  # a deep purple
}
# One colour per quantized engine (When int8 pays): x86 in the quantized orange, as every other tab's int8 model is
# packed under x86 (torch's default on Intel and AMD); fbgemm, whose Linear kernels x86 runs, in the darker orange.
ENGINE_COLORS = {
    "x86": QUANTIZED,
    "fbgemm": QUANTIZED_TEXT,
    "onednn": "#b279a2",  # a mauve
    "qnnpack": "#8c6d31",  # a dark ochre
}
OTHER_ENGINE = "#7f7f7f"
OTHER_FLOAT16 = "#1f4e79"  # the sidebar's own float16 spec, when it is no preset
OTHER_INT8 = "#9d755d"  # the sidebar's own int8 spec, when it is no preset

# Parts of a model and gates of an LSTM weight: colours no variant uses, so blue and orange keep meaning float
# and quantized.
PART_COLORS = alt.Scale(domain=["embedding", "lstm", "decoder"], range=["#86bcb6", "#499894", "#8cd17d"])
GATE_COLORS = alt.Scale(domain=["all", "i", "f", "g", "o"],
                        range=["#595959", "#d37295", "#59a14f", "#b6992d", "#bab0ac"])

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


def variant_color(label: str) -> str:
    """The colour of a variant or engine row label (``benchmark.engine_labels``): a preset's own, else its family's."""
    if label in VARIANT_COLORS:
        return VARIANT_COLORS[label]
    if label.startswith("onnxruntime"):
        return VARIANT_COLORS["onnxruntime int8"]
    return OTHER_FLOAT16 if "float16" in label else OTHER_INT8


def variant_scale(labels) -> alt.Scale:
    """A colour scale giving each of ``labels`` its ``variant_color``, in the order given."""
    labels = list(dict.fromkeys(labels))
    return alt.Scale(domain=labels, range=[variant_color(label) for label in labels])


def engine_scale(engines) -> alt.Scale:
    """A colour scale giving each quantized engine its ``ENGINE_COLORS`` colour, in the order given."""
    engines = list(dict.fromkeys(engines))
    return alt.Scale(domain=engines, range=[ENGINE_COLORS.get(e, OTHER_ENGINE) for e in engines])


def rgba(color: str, alpha: float) -> str:
    """A ``#rrggbb`` colour made see-through, for shading behind text."""
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha:.2f})"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


