"""The When int8 pays tab's charts: int8's speedup over float against batch size per engine, and the time of each
part (embedding, LSTM, decoder) at the smallest and largest batch."""
from __future__ import annotations

import altair as alt
import pandas as pd

from wlm.evaluate import BPTT
from wlm.model import PART_NAMES
from wlm.speedup import PAYS, SPEEDUP_NAMES, parts_takeaway, speedup_takeaway

from .style import BAR_PX, MIN_HEIGHT, PART_COLORS, REFERENCE, TALL, Figure, engine_scale, readable


def _name(column: str) -> str:
    return SPEEDUP_NAMES.get(column, column)


def speedup_chart(table: pd.DataFrame) -> Figure:
    """Lines of int8's speedup over float against batch (log scale), one per engine, over a rule at 1× (float's
    speed) and a dotted one at ``PAYS``, from ``wlm.speedup.when_int8_pays``."""
    engines = list(dict.fromkeys(table["engine"]))
    batches = sorted(int(b) for b in table["batch"].unique())
    x = alt.X("batch:Q", title="batch size (streams read at once)",
              scale=alt.Scale(type="log", base=2, domain=[batches[0], batches[-1]] if len(batches) > 1 else None),
              axis=alt.Axis(values=batches, format="d", labelAngle=0))
    lines = alt.Chart(table).mark_line(point=alt.OverlayMarkDef(size=70), strokeWidth=3).encode(
        x=x,
        y=alt.Y("speedup:Q", title="int8 speed ÷ float speed", scale=alt.Scale(zero=True)),
        color=alt.Color("engine:N", sort=engines, scale=engine_scale(engines), title=_name("engine"),
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        strokeDash=alt.condition(alt.datum.engine == "fbgemm", alt.value([6, 3]), alt.value([1, 0])),
        tooltip=[alt.Tooltip("engine:N", title=_name("engine")), alt.Tooltip("batch:Q", title=_name("batch")),
                 alt.Tooltip("speedup:Q", format=".2f", title=_name("speedup")),
                 alt.Tooltip("float_tokens_per_s:Q", format=",.0f", title=_name("float_tokens_per_s")),
                 alt.Tooltip("int8_tokens_per_s:Q", format=",.0f", title=_name("int8_tokens_per_s"))],
    )
    rules = pd.DataFrame({"speedup": [1.0, PAYS], "meaning": ["float's speed", f"pays from {PAYS:g}×"]})
    rule = alt.Chart(rules).mark_rule(color=REFERENCE).encode(
        y="speedup:Q", strokeDash=alt.condition(alt.datum.speedup == 1.0, alt.value([1, 0]), alt.value([2, 4])),
        tooltip=[alt.Tooltip("meaning:N", title="line")])
    chart = alt.layer(rule, lines).properties(height=TALL + 60)  # the plot, its axes and the legend under them
    return Figure(readable(chart), speedup_takeaway(table))


def part_labels(parts: pd.DataFrame) -> pd.DataFrame:
    """The per-part rows with a bar label each: 'batch 1 · float'."""
    labelled = parts.copy()
    labelled["bar"] = "batch " + labelled["batch"].astype(str) + " · " + labelled["model"]
    return labelled


def parts_chart(parts: pd.DataFrame, bptt: int = BPTT) -> Figure:
    """One stacked bar of microseconds per token per batch and model, split into embedding, LSTM and decoder."""
    labelled = part_labels(parts)
    order = list(dict.fromkeys(labelled.sort_values(["batch", "model"])["bar"]))
    chart = alt.Chart(labelled).mark_bar().encode(
        x=alt.X("us_per_token:Q", title=_name("us_per_token"), stack="zero"),
        y=alt.Y("bar:N", sort=order, title=None),
        color=alt.Color("part:N", scale=PART_COLORS, sort=list(PART_NAMES), title=_name("part"),
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        order=alt.Order("part_order:Q"),
        tooltip=[alt.Tooltip("bar:N", title="bar"), alt.Tooltip("part:N", title=_name("part")),
                 alt.Tooltip("us_per_token:Q", format=",.1f", title=_name("us_per_token"))],
    ).transform_calculate(part_order=f"indexof({list(PART_NAMES)}, datum.part)")
    chart = chart.properties(height=max(MIN_HEIGHT, BAR_PX * len(order)) + 60)
    return Figure(readable(chart), parts_takeaway(parts, bptt))
