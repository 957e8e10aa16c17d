"""The Speed & accuracy tab's charts: size and throughput per variant, and tokens per second against threads."""
from __future__ import annotations

import altair as alt
import pandas as pd

from wlm.sizes import format_mb

from .style import BAR_PX, FLOAT, MIN_HEIGHT, QUANTIZED, TALL, Figure, pct, readable


def _variant_bars(table: pd.DataFrame, field: str, title: str, tooltip: list) -> alt.Chart:
    """One bar per row of a ``benchmark_variants`` table, float in its colour and every variant in quantized's."""
    return alt.Chart(table).mark_bar().encode(
        x=alt.X(f"{field}:Q", title=title),
        y=alt.Y("variant:N", sort=list(table["variant"]), title=None),
        color=alt.condition(alt.datum.variant == "fp32", alt.value(FLOAT), alt.value(QUANTIZED)),
        tooltip=["variant", *tooltip],
    ).properties(height=max(MIN_HEIGHT, BAR_PX * len(table)))


def variants_size_chart(table: pd.DataFrame) -> Figure:
    """Bars of size per variant, from ``benchmark_variants``."""
    chart = _variant_bars(table, "size_mb", "size (MB)", [alt.Tooltip("size_mb:Q", format=".2f", title="MB"),
                                                          alt.Tooltip("loss:Q", format=".4f"),
                                                          alt.Tooltip("ppl:Q", format=".2f")])
    base = float(table.loc[table["variant"] == "fp32", "size_mb"].iloc[0])
    smallest = table.loc[table["size_mb"].idxmin()]
    if smallest["variant"] == "fp32":
        text = f"Every variant is as big as float ({format_mb(base)})."
    else:
        text = (f"Smallest: {smallest['variant']} at {format_mb(smallest['size_mb'])}, "
                f"{pct(1 - smallest['size_mb'] / base)} less than float's {format_mb(base)}.")
    return Figure(readable(chart), text)


def throughput_chart(table: pd.DataFrame) -> Figure:
    """Bars of tokens/s per variant, from ``benchmark_variants``."""
    chart = _variant_bars(table, "tokens_per_s", "tokens per second",
                          [alt.Tooltip("tokens_per_s:Q", format=",.0f", title="tok/s"),
                           alt.Tooltip("speedup:Q", format=".2f"), alt.Tooltip("seconds:Q", format=".2f")])
    fastest = table.loc[table["tokens_per_s"].idxmax()]
    if fastest["variant"] == "fp32":
        text = f"No variant beats float here ({fastest['tokens_per_s']:,.0f} tok/s); try more tokens or 1 thread."
    else:
        text = (f"Fastest: {fastest['variant']} at {fastest['tokens_per_s']:,.0f} tok/s, "
                f"{fastest['speedup']:.2f}× float.")
    return Figure(readable(chart), text)


def thread_chart(sweep: pd.DataFrame) -> Figure:
    """Lines of tokens/s against thread count, one per variant (from ``benchmark.thread_sweep``)."""
    chart = alt.Chart(sweep).mark_line(point=True).encode(
        x=alt.X("threads:O", title="threads", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("tokens_per_s:Q", title="tokens per second"),
        color=alt.Color("variant:N"),
        tooltip=["variant", "threads", alt.Tooltip("tokens_per_s:Q", format=",.0f", title="tok/s")],
    ).properties(height=TALL)
    best = sweep.loc[sweep.groupby("variant")["tokens_per_s"].idxmax()].set_index("variant")
    fewest = int(sweep["threads"].min())
    base = sweep[sweep["threads"] == fewest].set_index("variant")["tokens_per_s"]
    parts = []
    for variant, row in best.iterrows():
        if row.threads == fewest:
            parts.append(f"{variant} gains nothing from more threads ({row.tokens_per_s:,.0f} tok/s)")
        else:
            parts.append(f"{variant} peaks at {int(row.threads)} threads ({row.tokens_per_s:,.0f} tok/s, "
                         f"×{row.tokens_per_s / base[variant]:.2f} over {fewest})")
    return Figure(readable(chart), "; ".join(parts) + ".")
