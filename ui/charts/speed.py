"""The Speed & accuracy tab's charts: size and throughput per variant, and tokens per second against threads."""
from __future__ import annotations

import altair as alt
import pandas as pd

from wlm.sizes import format_mb
from wlm.threads import in_words

from ..glossary import name
from .style import BAR_PX, MIN_HEIGHT, TALL, Figure, pct, readable, variant_scale


def _variant_bars(table: pd.DataFrame, field: str, tooltip: list) -> alt.Chart:
    """One bar per row of a ``benchmark_variants`` table, each variant and engine in its own colour."""
    order = list(table["variant"])
    return alt.Chart(table).mark_bar().encode(
        x=alt.X(f"{field}:Q", title=name(field)),
        y=alt.Y("variant:N", sort=order, title=None),
        color=alt.Color("variant:N", scale=variant_scale(order), legend=None),  # the axis names each bar
        tooltip=[alt.Tooltip("variant:N", title=name("variant")), *tooltip],
    ).properties(height=max(MIN_HEIGHT, BAR_PX * len(table)))


def _tip(field: str, fmt: str) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", format=fmt, title=name(field))


def variants_size_chart(table: pd.DataFrame) -> Figure:
    """Bars of size per variant, from ``benchmark_variants``."""
    chart = _variant_bars(table, "size_mb", [_tip("size_mb", ".2f"), _tip("loss", ".4f"), _tip("ppl", ".2f")])
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
    chart = _variant_bars(table, "tokens_per_s", [_tip("tokens_per_s", ",.0f"), _tip("speedup", ".2f"),
                                                  _tip("seconds", ".2f")])
    fastest = table.loc[table["tokens_per_s"].idxmax()]
    if fastest["variant"] == "fp32":
        text = f"No variant beats float here ({fastest['tokens_per_s']:,.0f} tokens/s); try more tokens or 1 thread."
    else:
        text = (f"Fastest: {fastest['variant']} at {fastest['tokens_per_s']:,.0f} tokens/s, "
                f"{fastest['speedup']:.2f}× float.")
    return Figure(readable(chart), text)


def thread_chart(sweep: pd.DataFrame) -> Figure:
    """Lines of tokens/s against thread count, one per variant (from ``benchmark.thread_sweep``)."""
    order = list(dict.fromkeys(sweep["variant"]))
    chart = alt.Chart(sweep).mark_line(point=True).encode(
        x=alt.X("threads:O", title=name("threads"), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("tokens_per_s:Q", title=name("tokens_per_s")),
        color=alt.Color("variant:N", sort=order, scale=variant_scale(order), title=name("variant"),
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        tooltip=[alt.Tooltip("variant:N", title=name("variant")), alt.Tooltip("threads:O", title=name("threads")),
                 _tip("tokens_per_s", ",.0f")],
    ).properties(height=TALL + 60)  # the plot, its axes and the legend under them
    best = sweep.loc[sweep.groupby("variant")["tokens_per_s"].idxmax()].set_index("variant")
    fewest = int(sweep["threads"].min())
    base = sweep[sweep["threads"] == fewest].set_index("variant")["tokens_per_s"]
    parts = []
    for variant in order:
        row = best.loc[variant]
        if row.threads == fewest:
            speeds = sweep[sweep["variant"] == variant].set_index("threads")["tokens_per_s"]
            most = int(speeds.index.max())
            if speeds[most] < 0.9 * row.tokens_per_s:  # more threads than free cores wait on each other
                parts.append(f"{variant} is fastest at {in_words(fewest)} ({row.tokens_per_s:,.0f} tokens/s) and "
                             f"slows down with more threads ({speeds[most]:,.0f} at {most}, "
                             f"{speeds[most] / row.tokens_per_s:.2f}×)")
            else:
                parts.append(f"{variant} gains nothing from more threads ({row.tokens_per_s:,.0f} tokens/s)")
        else:
            parts.append(f"{variant} peaks at {int(row.threads)} threads ({row.tokens_per_s:,.0f} tokens/s, "
                         f"{row.tokens_per_s / base[variant]:.2f}× its speed at {fewest})")
    return Figure(readable(chart), "; ".join(parts) + ".")
