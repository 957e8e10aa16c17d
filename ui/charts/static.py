"""The Static or dynamic tab's charts: one point's run-time scales against its fixed ones, and the loss against the
calibration size. Their takeaways are ``wlm.static_quant``'s sentences: the command line prints the same."""
from __future__ import annotations

import altair as alt
import pandas as pd

from wlm.static_quant import DYNAMIC, StaticStudy, point_label, scales_takeaway, sizes_takeaway

from .style import ACCENT, FLOAT, HEIGHT, REAL_INT8, REFERENCE, SCALE, TALL, Figure, readable

# The fixed scales, one colour each (run-time scales are SCALE, as on the Inside a multiply tab).
OBSERVER_COLORS = {"min-max": REFERENCE, "histogram": ACCENT}


def _observer_scale(observers) -> alt.Scale:
    names = [f"static {o}" for o in observers]
    return alt.Scale(domain=names, range=[OBSERVER_COLORS.get(o, REFERENCE) for o in observers])


def scales_chart(found: StaticStudy, point: str) -> Figure:
    """Every run-time scale dynamic quantization picked at ``point`` on the test tokens (a line over the token
    positions), with each observer's fixed scale as a horizontal rule."""
    runtime = found.scales[found.scales["point"] == point]
    entry = found.points.set_index("point").loc[point]
    x = alt.X("position:Q", title="test token where the input starts")
    line = alt.Chart(runtime).mark_line(color=SCALE, strokeWidth=1.5, point=len(runtime) <= 120).encode(
        x=x, y=alt.Y("scale:Q", title="activation scale", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("position:Q", title="token"), alt.Tooltip("scale:Q", format=".4g"),
                 alt.Tooltip("low:Q", format=".3f", title="min"), alt.Tooltip("high:Q", format=".3f", title="max")])
    fixed = pd.DataFrame({"scale": [entry[f"{o.replace('-', '_')}_scale"] for o in found.observers],
                          "fixed": [f"static {o}" for o in found.observers]})
    rules = alt.Chart(fixed).mark_rule(strokeWidth=3, strokeDash=[8, 4]).encode(
        y="scale:Q", color=alt.Color("fixed:N", scale=_observer_scale(found.observers), title="fixed scale"),
        tooltip=["fixed:N", alt.Tooltip("scale:Q", format=".4g")])
    chart = alt.layer(line, rules).properties(height=HEIGHT, title=f"Input of {point_label(point)}")
    return Figure(readable(chart), scales_takeaway(found, point) + " The line is the run-time scale of each input; "
                  "the dashed lines are the fixed ones.")


def sizes_chart(found: StaticStudy) -> Figure:
    """Loss against the number of calibration tokens (log scale), a line per observer, with the dynamic variant's
    and the float model's losses as rules."""
    table = found.table("calibration size")
    x = alt.X("calibration_tokens:Q", title="calibration tokens (training split)", scale=alt.Scale(type="log"))
    y = alt.Y("loss:Q", title="test loss (nats)", scale=alt.Scale(zero=False))
    lines = alt.Chart(table).mark_line(point=alt.OverlayMarkDef(size=80), strokeWidth=3).encode(
        x=x, y=y, color=alt.Color("activations:N", scale=_observer_scale(found.observers), title="static"),
        tooltip=["activations", alt.Tooltip("calibration_tokens:Q", format=",", title="calibration tokens"),
                 alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("clipped_share:Q", format=".3%", title="clipped")])
    variants = found.table("variants")
    reference = variants[variants["activations"].isin(["float", DYNAMIC])][["activations", "loss"]]
    rules = alt.Chart(reference).mark_rule(strokeDash=[6, 4], strokeWidth=2).encode(
        y="loss:Q", color=alt.Color("activations:N", title="reference",
                                    scale=alt.Scale(domain=["float", DYNAMIC], range=[FLOAT, REAL_INT8])),
        tooltip=["activations", alt.Tooltip("loss:Q", format=".4f")])
    chart = alt.layer(lines, rules).resolve_scale(color="independent").properties(height=TALL)
    return Figure(readable(chart), sizes_takeaway(found) + " The dashed lines are float and the real dynamic variant.")
