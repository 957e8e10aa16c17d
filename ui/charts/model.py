"""The Model tab's chart: size per part, float against quantized."""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from wlm.model import PART_NAMES
from wlm.sizes import format_mb

from ..glossary import name
from .style import MIN_HEIGHT, PART_COLORS, Figure, pct, readable


def size_takeaway(sizes: pd.DataFrame) -> str:
    """From ``sizes.size_by_part`` with models 'float' and 'quantized'."""
    by = sizes.pivot(index="part", columns="model", values="mb")
    total_f, total_q = by["float"].sum(), by["quantized"].sum()
    emb_f, emb_q = by.loc["embedding", "float"], by.loc["embedding", "quantized"]
    if math.isclose(total_f, total_q, rel_tol=1e-3):
        return (f"Nothing is quantized: both models weigh {format_mb(total_f)}. "
                "Switch on LSTM or Linear in the sidebar.")
    head = (f"Quantized: {format_mb(total_q)} vs {format_mb(total_f)} float "
            f"({pct(1 - total_q / total_f)} smaller; float is {total_f / total_q:.2f}× as big)")
    if math.isclose(emb_f, emb_q, rel_tol=1e-3):
        return head + f"; the float embedding is {pct(emb_q / total_q)} of the quantized model, so it caps the saving."
    return head + f"; quantizing the embedding took it from {format_mb(emb_f)} to {format_mb(emb_q)}."


def size_chart(sizes: pd.DataFrame) -> Figure:
    """Stacked bars of size per part, float vs quantized."""
    chart = alt.Chart(sizes).mark_bar().encode(
        y=alt.Y("model:N", title=None, sort=["float", "quantized"]),
        x=alt.X("mb:Q", title=name("size_mb"), stack="zero"),
        color=alt.Color("part:N", sort=list(PART_NAMES), title=name("part"), scale=PART_COLORS),
        order=alt.Order("part_index:Q"),
        tooltip=["model", "part", alt.Tooltip("mb:Q", format=".2f", title="MB"),
                 alt.Tooltip("share:Q", format=".0%", title="share of model")],
    ).transform_calculate(
        part_index=f"indexof({list(PART_NAMES)!r}, datum.part)"
    ).properties(height=MIN_HEIGHT)
    return Figure(readable(chart), size_takeaway(sizes))
