"""The Fidelity tab's charts: next words, per-token KL, weight SQNR, one weight's histogram, which variant to pick.

The per-word surprise the tab also shows is shaded text, in ``word_html``."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from wlm.fidelity import FidelityResult, WeightHistogram
from wlm.sizes import format_mb

from ..glossary import name
from .histogram import grid_histogram
from .style import (
    GATE_COLORS,
    HEIGHT,
    MODEL_COLORS,
    TALL,
    Figure,
    pct,
    readable,
    variant_color,
    variant_scale,
)


def _prob(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def next_word_chart(table: pd.DataFrame) -> Figure:
    """Grouped bars of next-word probabilities, from ``next_word.next_words_pair``."""
    order = list(dict.fromkeys(table["word"]))
    # Words down the side, each on its own row: on a phone a word axis along the bottom keeps two labels of eight.
    chart = alt.Chart(table).mark_bar().encode(
        y=alt.Y("word:N", sort=order, title=None, axis=alt.Axis(labelLimit=140)),
        yOffset=alt.YOffset("model:N", sort=["float", "quantized"]),
        x=alt.X("prob:Q", title="probability", axis=alt.Axis(format="%", tickCount=4)),
        color=alt.Color("model:N", scale=MODEL_COLORS, legend=alt.Legend(orient="top", title=None)),
        tooltip=["word", "model", alt.Tooltip("prob:Q", format=".2%"), "rank"],
    ).properties(height=max(TALL, 30 * len(order)))
    top = {m: g.sort_values("rank").iloc[0] for m, g in table.groupby("model")}
    gap = (table.pivot(index="word", columns="model", values="prob").eval("quantized - float").abs().max())
    if top["float"]["word"] == top["quantized"]["word"]:
        text = (f"Both models put {top['float']['word']!r} first ({_prob(top['float']['prob'])} float, "
                f"{_prob(top['quantized']['prob'])} quantized); no shown word moves by more than {_prob(gap)}.")
    else:
        text = (f"The models disagree: float picks {top['float']['word']!r} ({_prob(top['float']['prob'])}), "
                f"quantized picks {top['quantized']['word']!r} ({_prob(top['quantized']['prob'])}).")
    return Figure(readable(chart), text)


def kl_chart(result: FidelityResult, variant: str = "tutorial") -> Figure:
    """Histogram of per-prediction KL(float ‖ quantized) on a log scale, from ``fidelity.output_fidelity``, in the
    colour of ``variant`` (the model compared with float)."""
    kl = np.maximum(result.kl.astype(float), 1e-9)
    frame = pd.DataFrame({"log10_kl": np.log10(kl)})
    # The bins are of log10 KL; the axis labels them as the KL they stand for (-3 reads 0.001).
    low, high = int(np.floor(frame["log10_kl"].min())), int(np.ceil(frame["log10_kl"].max()))
    axis = alt.Axis(values=list(range(low, max(high, low + 1) + 1)),
                    labelExpr="datum.value >= -3 ? format(pow(10, datum.value), '~g') : '1e' + datum.value")
    chart = alt.Chart(frame).mark_bar(color=variant_color(variant)).encode(
        x=alt.X("log10_kl:Q", bin=alt.Bin(maxbins=40), axis=axis, scale=alt.Scale(domain=[low, max(high, low + 1)]),
                title="KL divergence per prediction (nats, log scale)"),
        y=alt.Y("count():Q", title=name("tokens")),
        tooltip=[alt.Tooltip("count():Q", title=name("tokens"))],
    ).properties(height=HEIGHT)
    return Figure(readable(chart), kl_takeaway(result))


def kl_takeaway(result: FidelityResult) -> str:
    """Top-1 agreement and the KL statistics the tab's metrics show: median and 99th percentile, and the worst."""
    agree = round(result.top1_agreement * result.tokens)
    return (f"Top-1 agreement {result.top1_agreement:.1%}: both models rank the same next word first in {agree:,} of "
            f"{result.tokens:,} predictions. KL divergence: median {result.kl_median:.2g} nats, 99th percentile "
            f"{result.kl_p99:.2g}, worst {result.kl_max:.2g}; the loss changes by {result.delta_loss:+.4f}.")


def sqnr_chart(sqnr: pd.DataFrame) -> Figure:
    """SQNR (dB) per weight, LSTM weights split per gate, from ``fidelity.weight_sqnr``."""
    data = sqnr[np.isfinite(sqnr["sqnr_db"])].copy()
    # 'l0 ih' rather than 'weight_ih_l0': eleven names that fit level under their bars, none hidden for overlap.
    short = data["weight"].str.replace(r"^weight_(\w+)_(l\d+)$", r"\2 \1", regex=True)
    data["what"] = np.where(data["part"] == "lstm", short, data["part"])
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("what:N", sort=list(dict.fromkeys(data["what"])), axis=alt.Axis(labelAngle=0),
                title=["LSTM layer and weight", "(ih: input, hh: hidden), decoder"]),  # two lines fit a phone
        xOffset=alt.XOffset("gate:N", sort=["all", "i", "f", "g", "o"]),
        y=alt.Y("sqnr_db:Q", title=f"{name('sqnr_db')}, higher is better"),
        color=alt.Color("gate:N", sort=["all", "i", "f", "g", "o"], scale=GATE_COLORS, title=name("gate"),
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        tooltip=["part", "weight", "gate", alt.Tooltip("sqnr_db:Q", format=".1f", title=name("sqnr_db"))],
    ).properties(height=TALL + 60)  # the plot, its axes and the gates' legend under them
    whole = data[data["gate"] == "all"]
    chart = readable(chart)
    if whole.empty:
        return Figure(chart, "No quantized weights to measure.")
    worst = data.loc[data["sqnr_db"].idxmin()]
    weight = worst["weight"] if worst["part"] == "lstm" else f"the {worst['part']}'s {worst['weight']}"
    where = weight + ("" if worst["gate"] == "all" else f" gate {worst['gate']}")
    text = (f"Weakest: {where} at {worst['sqnr_db']:.1f} dB; the median weight keeps "
            f"{whole['sqnr_db'].median():.1f} dB (each 6 dB is about one bit of precision).")
    return Figure(chart, text)


def histogram_chart(hist: WeightHistogram, max_levels: int = 300) -> Figure:
    """Histogram of one weight's float values with the quantization grid drawn as rules."""
    grid = hist.grid
    chart = readable(grid_histogram(hist.bins, grid if len(grid) <= max_levels else [], hist.name)
                     .properties(height=HEIGHT))
    if hist.scale:
        text = (f"Grid step {hist.scale:.2g}: the weights use {len(grid)} of 256 int8 levels"
                f"{'' if len(grid) <= max_levels else ' (too dense to draw)'}; the largest rounding error is "
                f"{hist.max_error:.2g} ({hist.max_error / hist.scale:.2f} of a step).")
    else:
        text = (f"No single per-tensor grid (per-row or float16 weights); the largest rounding error is "
                f"{hist.max_error:.2g}.")
    return Figure(chart, text)


LABEL_PX = 17  # between the stacked names of variants that land on one spot
TRADEOFF_HEIGHT = TALL + 100  # the plot, its axes and the tokens/s legend under them


def label_places(table: pd.DataFrame, near_x: float = 0.35, near_y: float = 0.1) -> pd.DataFrame:
    """Where each variant's name goes beside its point in the trade-off chart: ``side`` (right of a point in the
    left part of the chart, else left of it, so no name runs off the edge) and ``slot`` (its place in a stack
    of names of points that land close together, top first; 0 when it has the spot to itself).

    Closeness is measured in fractions of the axes' spans (size from 0, as the chart draws it): a bold 14 px name
    is about a third of the plot's width on a phone, and a sixth of its height is three names."""
    x = table["size_mb"].to_numpy(float) / max(float(table["size_mb"].max()), 1e-12)
    y_all = table["delta_loss"].to_numpy(float)
    low, high = min(0.0, float(y_all.min())), float(y_all.max())
    y = (y_all - low) / ((high - low) or 1.0)
    side = np.where(x > 0.6, "left", "right")
    # Points are near when their names, on the same side, would overlap: a cluster is joined through near pairs.
    group = list(range(len(table)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(table)):
        for j in range(i):
            if side[i] == side[j] and abs(x[i] - x[j]) < near_x and abs(y[i] - y[j]) < near_y:
                group[root(i)] = root(j)
    roots = [root(i) for i in range(len(table))]
    slot, size = np.zeros(len(table), int), np.ones(len(table), int)
    for r in set(roots):
        members = [i for i in range(len(table)) if roots[i] == r]
        for place, i in enumerate(sorted(members, key=lambda i: (-y[i], i))):  # the highest point's name on top
            slot[i], size[i] = place, len(members)
    return pd.DataFrame({"variant": list(table["variant"]), "side": side, "slot": slot, "stack": size})


def tradeoff_chart(table: pd.DataFrame) -> Figure:
    """Size (x) against Δloss (y), point size = tokens/s, one point per variant (``benchmark.with_delta_loss``).

    Each point has its variant's colour and shape and its name beside it; names of points that land close
    together are stacked. fp32, the reference, is the one filled shape, drawn first and see-through, and every
    other variant an outline on top of it: where a variant lands on float's spot (float16 stores as many bytes and
    scores the same loss) both still show. The tokens/s legend sits under the plot, in one row, so it fits a
    phone's width as well as a projector's."""
    order = list(table["variant"])
    data = table.merge(label_places(table), on="variant")
    data["draw"] = [0 if v == "fp32" else 1 for v in data["variant"]]
    x = alt.X("size_mb:Q", title=name("size_mb"), scale=alt.Scale(zero=True))
    y = alt.Y("delta_loss:Q", title=f"{name('delta_loss')} vs float, lower is better")
    color = alt.Color("variant:N", sort=order, scale=variant_scale(order), legend=None)
    speeds = table["tokens_per_s"]
    size = alt.Size("tokens_per_s:Q", title=name("tokens_per_s"), scale=alt.Scale(range=[120, 600]),
                    legend=alt.Legend(orient="bottom", direction="horizontal", format=",.0f",
                                      values=sorted({round(float(speeds.min())), round(float(speeds.max()))})))
    is_float = alt.datum.variant == "fp32"
    points = alt.Chart(data).mark_point(strokeWidth=2.5).encode(
        x=x, y=y, size=size, color=color,
        fill=alt.condition(is_float, alt.Color("variant:N", scale=variant_scale(order), legend=None),
                           alt.value("transparent")),
        fillOpacity=alt.condition(is_float, alt.value(0.75), alt.value(0)),
        shape=alt.Shape("variant:N", sort=order, legend=None),
        order=alt.Order("draw:Q"),
        tooltip=[alt.Tooltip("variant:N", title=name("variant")),
                 alt.Tooltip("size_mb:Q", format=".2f", title=name("size_mb")),
                 alt.Tooltip("delta_loss:Q", format="+.4f", title=name("delta_loss")),
                 alt.Tooltip("tokens_per_s:Q", format=",.0f", title=name("tokens_per_s"))],
    )
    layers = [points]
    for (side, slot, stack), _ in data.groupby(["side", "slot", "stack"]):
        layers.append(alt.Chart(data).transform_filter(
            (alt.datum.side == side) & (alt.datum.slot == int(slot)) & (alt.datum.stack == int(stack))
        ).mark_text(align="left" if side == "right" else "right", dx=14 if side == "right" else -14,
                    dy=round((slot - (stack - 1) / 2) * LABEL_PX), fontSize=14, fontWeight="bold").encode(
            x=x, y=y, text="variant:N", color=color))
    chart = readable(alt.layer(*layers).properties(height=TRADEOFF_HEIGHT))
    return Figure(chart, tradeoff_takeaway(table))


def tradeoff_takeaway(table: pd.DataFrame, tolerance: float = 0.01) -> str:
    """The smallest variant whose loss is within ``tolerance`` nats of float's."""
    ok = table[(table["variant"] != "fp32") & (table["delta_loss"] <= tolerance)]
    base = float(table.loc[table["variant"] == "fp32", "size_mb"].iloc[0])
    if ok.empty:
        best = table[table["variant"] != "fp32"].sort_values("delta_loss").iloc[0]
        return (f"Every variant costs more than {tolerance} nats of loss; the closest is {best['variant']} "
                f"({best['delta_loss']:+.4f} at {format_mb(best['size_mb'])}).")
    pick = ok.sort_values(["size_mb", "delta_loss"]).iloc[0]
    return (f"Pick {pick['variant']}: {format_mb(pick['size_mb'])} ({pct(pick['size_mb'] / base)} of float) for "
            f"{pick['delta_loss']:+.4f} loss, at {pick['tokens_per_s']:,.0f} tokens/s.{on_float_note(table)}")


def on_float_note(table: pd.DataFrame, within: float = 0.01) -> str:
    """A sentence naming the variants whose point lands on fp32's (within ``within`` of both axes' spans), so that
    a reader looks for the outline around fp32's filled point; empty when none does."""
    x = table.set_index("variant")["size_mb"] / max(float(table["size_mb"].max()), 1e-12)
    y = table.set_index("variant")["delta_loss"]
    span = (float(y.max()) - min(0.0, float(y.min()))) or 1.0
    same = [v for v in x.index if v != "fp32" and abs(x[v] - x["fp32"]) < within
            and abs(y[v] - y["fp32"]) / span < within]
    if not same:
        return ""
    rows = table.set_index("variant").loc[same]
    base = format_mb(float(table.loc[table["variant"] == "fp32", "size_mb"].iloc[0]))
    detail = "; ".join(f"{v}: {format_mb(r.size_mb)} against {base}, Δ loss {r.delta_loss:+.2g}"
                       for v, r in rows.iterrows())
    return (f" {', '.join(same)} {'lands' if len(same) == 1 else 'land'} on float's point ({detail}): "
            f"{'its outline is' if len(same) == 1 else 'their outlines are'} drawn over fp32's filled one.")
