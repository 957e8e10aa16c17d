"""The Fewer bits tab's charts: loss against bits, and one weight on its N-bit grid.

The sweep's takeaway is ``low_bits.sweep_takeaway``: the command line prints the same sentence."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from wlm.fidelity import histogram_bins
from wlm.low_bits import CLIFF_NATS, BitsHistogram, sweep_takeaway

from .histogram import grid_histogram
from .style import ACCENT, HEIGHT, PER_ROW, QUANTIZED, REAL_INT8, REFERENCE, TALL, Figure, readable

SCHEME_COLORS = alt.Scale(domain=["per-tensor", "per-row"], range=[QUANTIZED, PER_ROW])


def bits_loss_chart(table: pd.DataFrame) -> Figure:
    """Loss against bits (8 at the left, 2 at the right), a line per scheme, the real int8 variant
    as a black diamond, the float loss and float + 0.05 nats as rules (from ``low_bits.sweep``)."""
    sim = table[table["scheme"].isin(["per-tensor", "per-row"])]
    x = alt.X("bits:O", sort="descending", title="weight bits", axis=alt.Axis(labelAngle=0))
    y = alt.Y("loss:Q", title="test loss (nats)", scale=alt.Scale(zero=False))
    tooltip = ["scheme", "bits:Q", alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("perplexity:Q", format=",.1f"),
               alt.Tooltip("delta_loss:Q", format="+.4f", title="Δ loss")]
    lines = alt.Chart(sim).mark_line(point=alt.OverlayMarkDef(size=80), strokeWidth=3).encode(
        x=x, y=y, color=alt.Color("scheme:N", scale=SCHEME_COLORS, title="scheme"), tooltip=tooltip)
    layers = [lines]
    real = table[table["scheme"] == "real int8"]
    if len(real):
        layers.append(alt.Chart(real).mark_point(shape="diamond", size=260, filled=True, color=REAL_INT8).encode(
            x=x, y=y, tooltip=tooltip))
    base = table[table["scheme"] == "float"]
    if len(base):
        level = float(base["loss"].iloc[0])
        rules = pd.DataFrame({"loss": [level, level + CLIFF_NATS],
                              "line": ["float", f"float + {CLIFF_NATS} nats"]})
        layers.append(alt.Chart(rules).mark_rule(strokeDash=[6, 4]).encode(
            y="loss:Q", color=alt.Color("line:N", title="reference", scale=alt.Scale(range=[REFERENCE, ACCENT])),
            tooltip=["line:N", alt.Tooltip("loss:Q", format=".4f")]))
    chart = alt.layer(*layers).resolve_scale(color="independent").properties(height=TALL)
    return Figure(readable(chart), sweep_takeaway(table) + " The black diamond is the real int8 variant.")


def bits_histogram_chart(hist: BitsHistogram, max_levels: int = 64) -> Figure:
    """Histogram of one weight's float values with the N-bit grid drawn as rules."""
    levels = hist.grid if len(hist.grid) <= max_levels else []
    bins = histogram_bins(hist.values)
    chart = grid_histogram(bins, levels, hist.name, rule_width=2, rule_opacity=0.6).properties(height=HEIGHT)
    where = "" if hist.scheme == "per-tensor" else " (grid of the row with the widest range; each row has its own)"
    text = (f"{hist.bits} bits {hist.scheme}: {2 ** hist.bits} levels {hist.scale:.2g} apart{where}; the rounded "
            f"tensor takes {hist.distinct} distinct values, largest rounding error "
            f"{float(np.abs(hist.errors).max()):.2g}.")
    return Figure(readable(chart), text)
