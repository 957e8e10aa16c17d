"""The Fewer bits tab's charts: loss against bits, Δ loss against the bits a weight really takes stored, and one
weight on its N-bit grid.

The sweep's takeaway is ``low_bits.sweep_takeaway``: the command line prints the same sentence."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from wlm.fidelity import histogram_bins
from wlm.low_bits import (
    CLIFF_NATS,
    DEFAULT_GROUP_SIZE,
    SCHEMES,
    BitsHistogram,
    is_asymmetric,
    scheme_label,
    sweep_takeaway,
)

from .histogram import grid_histogram
from .style import ACCENT, HEIGHT, REAL_INT8, REFERENCE, SCHEME_COLORS, TALL, Figure, readable

# Where the size chart's symlog axis turns from linear to logarithmic: below a rounding cost a class would notice.
SYMLOG_NATS = 0.01
DELTA_TICKS = (0, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
LEGEND_COLUMNS = 2  # the widest label two to a row still fits a phone's width
LEGEND_ROW = 24  # px per row of 14 px legend labels


def simulated(table: pd.DataFrame) -> pd.DataFrame:
    """A sweep's rounded rows in ``SCHEMES`` order, each with the ``label`` a chart and the table show
    (``per-group 64``) and whether it keeps a zero point."""
    rows = table[table["scheme"].isin(SCHEMES)].copy()
    groups = rows["group_size"] if "group_size" in rows else pd.Series(0, index=rows.index)
    rows["label"] = [scheme_label(s, int(g) or DEFAULT_GROUP_SIZE) for s, g in zip(rows["scheme"], groups)]
    rows["zero point"] = ["yes" if is_asymmetric(s) else "no" for s in rows["scheme"]]
    order = {scheme: i for i, scheme in enumerate(SCHEMES)}
    return rows.sort_values(["scheme", "bits"], key=lambda c: c.map(order) if c.name == "scheme" else -c)


def scheme_scale(rows: pd.DataFrame) -> alt.Scale:
    """Each scheme's ``SCHEME_COLORS`` colour, under its label."""
    pairs = list(dict.fromkeys(zip(rows["label"], rows["scheme"])))
    return alt.Scale(domain=[label for label, _ in pairs], range=[SCHEME_COLORS[scheme] for _, scheme in pairs])


def _scheme_color(rows: pd.DataFrame) -> alt.Color:
    # Below the chart, two to a row: a legend beside it would take half a phone's width from the lines.
    return alt.Color("label:N", scale=scheme_scale(rows), sort=list(dict.fromkeys(rows["label"])), title="scheme",
                     legend=alt.Legend(orient="bottom", direction="horizontal", columns=LEGEND_COLUMNS,
                                       titleOrient="left"))


def _height(rows: pd.DataFrame) -> int:
    """The chart's height with room for its legends: Streamlit fits a chart's legends into its height, and the plot
    itself should stay ``TALL`` less its axis."""
    lines = -(-rows["label"].nunique() // LEGEND_COLUMNS)
    return TALL + LEGEND_ROW * (1 + lines) + 16  # the reference legend above, the schemes below, their padding


# Asymmetric schemes are dashed as well as darker, so the zero point shows without telling colours apart.
_DASH = alt.StrokeDash("zero point:N", scale=alt.Scale(domain=["no", "yes"], range=[[1, 0], [6, 3]]), legend=None)


def _tooltip() -> list:
    return [alt.Tooltip("label:N", title="scheme"), "bits:Q", alt.Tooltip("loss:Q", format=".4f"),
            alt.Tooltip("perplexity:Q", format=",.1f"), alt.Tooltip("delta_loss:Q", format="+.4f", title="Δ loss"),
            alt.Tooltip("bits_per_weight:Q", format=".3f", title="bits per weight"),
            alt.Tooltip("size_mb:Q", format=",.1f", title="model size (MB)")]


def _reference_rules(levels: dict[str, float], field: str) -> alt.Chart:
    rules = pd.DataFrame({field: list(levels.values()), "line": list(levels)})
    return alt.Chart(rules).mark_rule(strokeDash=[6, 4]).encode(
        y=f"{field}:Q", color=alt.Color("line:N", title="reference", scale=alt.Scale(range=[REFERENCE, ACCENT]),
                                        legend=alt.Legend(orient="top", direction="horizontal", titleOrient="left")),
        tooltip=["line:N", alt.Tooltip(f"{field}:Q", format=".4f")])


def _real(table: pd.DataFrame) -> pd.DataFrame:
    real = table[table["scheme"] == "real int8"].copy()
    real["label"] = "real int8"
    return real


def bits_loss_chart(table: pd.DataFrame) -> Figure:
    """Loss against bits (8 at the left, 2 at the right), a line per scheme, the real int8 variant
    as a black diamond, the float loss and float + 0.05 nats as rules (from ``low_bits.sweep``)."""
    sim = simulated(table)
    x = alt.X("bits:O", sort="descending", title="weight bits", axis=alt.Axis(labelAngle=0))
    y = alt.Y("loss:Q", title="test loss (nats)", scale=alt.Scale(zero=False))
    tooltip = _tooltip()
    lines = alt.Chart(sim).mark_line(point=alt.OverlayMarkDef(size=80), strokeWidth=3).encode(
        x=x, y=y, color=_scheme_color(sim), strokeDash=_DASH, tooltip=tooltip)
    layers = [lines]
    real = _real(table)
    if len(real):
        layers.append(alt.Chart(real).mark_point(shape="diamond", size=260, filled=True, color=REAL_INT8).encode(
            x=x, y=y, tooltip=tooltip))
    base = table[table["scheme"] == "float"]
    if len(base):
        level = float(base["loss"].iloc[0])
        layers.append(_reference_rules({"float": level, f"float + {CLIFF_NATS} nats": level + CLIFF_NATS}, "loss"))
    chart = alt.layer(*layers).resolve_scale(color="independent").properties(height=_height(sim))
    return Figure(readable(chart), sweep_takeaway(table) + " The black diamond is the real int8 variant.")


def size_takeaway(table: pd.DataFrame, bits: int = 4) -> str:
    """At ``bits`` bits (the narrowest width swept when it was not), each scheme's stored bits per weight and its
    loss rise: what a finer scale costs in size against what it saves in loss."""
    sim = simulated(table)
    if bits not in set(sim["bits"]):
        bits = int(sim["bits"].min())
    at = sim[sim["bits"] == bits]
    parts = [f"{row.label} {row.bits_per_weight:.2f} bits a weight, Δ loss {row.delta_loss:+.3f}"
             for row in at.itertuples()]
    return (f"At {bits} bits: {'; '.join(parts)} nats. Scales and zero points are counted, so a point further "
            "left paid in size for its loss; lower right is better.")


def bits_size_chart(table: pd.DataFrame) -> Figure:
    """Δ loss against the stored bits per weight of the rounded weights (scales and zero points counted), a point per
    scheme and width, joined per scheme; the real int8 variant as a black diamond, float + 0.05 nats as a rule."""
    sim = simulated(table)
    top = 1.2 * max(float(sim["delta_loss"].max()), CLIFF_NATS)
    ticks = [t for t in DELTA_TICKS if t <= top]
    # Fewer bits to the right, as in the loss chart above, so a class reads the two as one story.
    x = alt.X("bits_per_weight:Q", title="stored bits per weight (scales counted)",
              scale=alt.Scale(zero=False, nice=False, padding=12, reverse=True), axis=alt.Axis(tickMinStep=1))
    # Not niced: on a symlog scale nicing stretches the domain far below zero, squashing the points into the top.
    low = min(0.0, float(sim["delta_loss"].min()))
    y = alt.Y("delta_loss:Q", title="Δ loss (nats)", axis=alt.Axis(values=ticks, format="~g"),
              scale=alt.Scale(type="symlog", constant=SYMLOG_NATS, nice=False, domain=[low, top]))
    tooltip = _tooltip()
    lines = alt.Chart(sim).mark_line(point=alt.OverlayMarkDef(size=80), strokeWidth=3).encode(
        x=x, y=y, color=_scheme_color(sim), strokeDash=_DASH, order="bits:Q", tooltip=tooltip)
    layers = [lines]
    real = _real(table)
    if len(real):
        layers.append(alt.Chart(real).mark_point(shape="diamond", size=260, filled=True, color=REAL_INT8).encode(
            x=x, y=y, tooltip=tooltip))
    layers.append(_reference_rules({"float": 0.0, f"float + {CLIFF_NATS} nats": CLIFF_NATS}, "delta_loss"))
    chart = alt.layer(*layers).resolve_scale(color="independent").properties(height=_height(sim))
    return Figure(readable(chart), size_takeaway(table))


def bits_histogram_chart(hist: BitsHistogram, max_levels: int = 64, group_size: int = DEFAULT_GROUP_SIZE) -> Figure:
    """Histogram of one weight's float values with the N-bit grid drawn as rules: the grid of the block (tensor,
    row or group) with the largest scale, as each block has its own."""
    levels = hist.grid if len(hist.grid) <= max_levels else []
    bins = histogram_bins(hist.values)
    chart = grid_histogram(bins, levels, hist.name, rule_width=2, rule_opacity=0.6).properties(height=HEIGHT)
    block = "row" if hist.scheme.startswith("per-row") else f"group of {group_size}"
    shifted = ", shifted by its zero point" if is_asymmetric(hist.scheme) else ""
    where = "" if hist.scheme == "per-tensor" else f" (grid of the {block} with the largest scale{shifted}; each " \
                                                   f"{block.split(' ')[0]} has its own)"
    text = (f"{hist.bits} bits {scheme_label(hist.scheme, group_size)}: {2 ** hist.bits} levels {hist.scale:.2g} "
            f"apart{where}; the rounded tensor takes {hist.distinct} distinct values, largest rounding error "
            f"{float(np.abs(hist.errors).max()):.2g}.")
    return Figure(readable(chart), text)
