"""The Fidelity tab's charts: next words, per-token KL, weight SQNR, one weight's histogram, which variant to pick.

The per-word surprise the tab also shows is shaded text, in ``word_html``."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from wlm.fidelity import FidelityResult, WeightHistogram
from wlm.sizes import format_mb

from .histogram import grid_histogram
from .style import HEIGHT, MODEL_COLORS, TALL, Figure, pct, readable


def _prob(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def next_word_chart(table: pd.DataFrame) -> Figure:
    """Grouped bars of next-word probabilities, from ``next_word.next_words_pair``."""
    order = list(dict.fromkeys(table["word"]))
    chart = alt.Chart(table).mark_bar().encode(
        x=alt.X("word:N", sort=order, title=None, axis=alt.Axis(labelAngle=-40)),
        xOffset=alt.XOffset("model:N", sort=["float", "quantized"]),
        y=alt.Y("prob:Q", title="probability", axis=alt.Axis(format="%")),
        color=alt.Color("model:N", scale=MODEL_COLORS),
        tooltip=["word", "model", alt.Tooltip("prob:Q", format=".2%"), "rank"],
    ).properties(height=TALL)
    top = {m: g.sort_values("rank").iloc[0] for m, g in table.groupby("model")}
    gap = (table.pivot(index="word", columns="model", values="prob").eval("quantized - float").abs().max())
    if top["float"]["word"] == top["quantized"]["word"]:
        text = (f"Both models put {top['float']['word']!r} first ({_prob(top['float']['prob'])} float, "
                f"{_prob(top['quantized']['prob'])} quantized); no shown word moves by more than {_prob(gap)}.")
    else:
        text = (f"The models disagree: float picks {top['float']['word']!r} ({_prob(top['float']['prob'])}), "
                f"quantized picks {top['quantized']['word']!r} ({_prob(top['quantized']['prob'])}).")
    return Figure(readable(chart), text)


def kl_chart(result: FidelityResult) -> Figure:
    """Histogram of per-token KL(float ‖ quantized) on a log scale, from ``fidelity.output_fidelity``."""
    kl = np.maximum(result.kl.astype(float), 1e-9)
    frame = pd.DataFrame({"log10_kl": np.log10(kl)})
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("log10_kl:Q", bin=alt.Bin(maxbins=40), title="log10 KL(float ‖ quantized), nats"),
        y=alt.Y("count():Q", title="tokens"),
        tooltip=[alt.Tooltip("count():Q", title="tokens")],
    ).properties(height=HEIGHT)
    agree = round(result.top1_agreement * result.tokens)
    text = (f"Top-1 agreement {result.top1_agreement:.1%} ({agree:,} of {result.tokens:,} tokens); median KL "
            f"{result.kl_median:.2g} nats, worst {result.kl_max:.2g}; loss changes by {result.delta_loss:+.4f}.")
    return Figure(readable(chart), text)


def sqnr_chart(sqnr: pd.DataFrame) -> Figure:
    """SQNR (dB) per weight, LSTM weights split per gate, from ``fidelity.weight_sqnr``."""
    data = sqnr[np.isfinite(sqnr["sqnr_db"])].copy()
    # 'l0 ih' rather than 'weight_ih_l0': eleven names that fit level under their bars, none hidden for overlap.
    short = data["weight"].str.replace(r"^weight_(\w+)_(l\d+)$", r"\2 \1", regex=True)
    data["what"] = np.where(data["part"] == "lstm", short, data["part"])
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("what:N", sort=list(dict.fromkeys(data["what"])), title="LSTM layer and weight (ih: input, hh: "
                "hidden), decoder", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("gate:N", sort=["all", "i", "f", "g", "o"]),
        y=alt.Y("sqnr_db:Q", title="SQNR (dB, higher is better)"),
        color=alt.Color("gate:N", sort=["all", "i", "f", "g", "o"]),
        tooltip=["part", "weight", "gate", alt.Tooltip("sqnr_db:Q", format=".1f", title="dB")],
    ).properties(height=TALL)
    whole = data[data["gate"] == "all"]
    chart = readable(chart)
    if whole.empty:
        return Figure(chart, "No quantized weights to measure.")
    worst = data.loc[data["sqnr_db"].idxmin()]
    name = worst["weight"] if worst["part"] == "lstm" else f"the {worst['part']}'s {worst['weight']}"
    where = name + ("" if worst["gate"] == "all" else f" gate {worst['gate']}")
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


def tradeoff_chart(table: pd.DataFrame) -> Figure:
    """Size (x) against Δloss (y), point size = tokens/s, one point per variant (``benchmark.with_delta_loss``).

    Variants are told apart by colour and shape in a legend: text beside the points collides wherever two
    variants land close together (the tutorial's and per-channel differ by half a megabyte)."""
    order = list(table["variant"])
    # Hollow shapes: where two variants land on one spot, both outlines still show.
    points = alt.Chart(table).mark_point(filled=False, strokeWidth=2.5, opacity=0.9).encode(
        x=alt.X("size_mb:Q", title="size (MB)", scale=alt.Scale(zero=True)),
        y=alt.Y("delta_loss:Q", title="Δ loss vs float (lower is better)"),
        size=alt.Size("tokens_per_s:Q", title="tokens/s", scale=alt.Scale(range=[80, 600])),
        color=alt.Color("variant:N", sort=order, title="variant", scale=alt.Scale(scheme="dark2")),
        shape=alt.Shape("variant:N", sort=order, title="variant"),
        tooltip=["variant", alt.Tooltip("size_mb:Q", format=".2f", title="MB"),
                 alt.Tooltip("delta_loss:Q", format="+.4f", title="Δ loss"),
                 alt.Tooltip("tokens_per_s:Q", format=",.0f", title="tok/s")],
    )
    chart = readable(points.properties(height=TALL))
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
            f"{pick['delta_loss']:+.4f} loss, at {pick['tokens_per_s']:,.0f} tok/s.")
