"""Altair charts for the demo, each with a one-line takeaway computed from the numbers it shows.

A student should be able to read the point of a chart from its takeaway alone, so every builder
returns both (``Figure``). The inputs are the DataFrames and results that ``wlm`` functions return.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd

from .corpus import EOS
from .fidelity import FidelityResult, WeightHistogram
from .generate import Agreement
from .model import PART_NAMES

MODEL_COLORS = alt.Scale(domain=["float", "quantized"], range=["#4c78a8", "#f58518"])
BAR_PX = 56  # per bar of a horizontal bar chart: a bar and its gap, with a 14 px label beside it
MIN_HEIGHT = 180  # no chart is shorter (a projector at 1280x720 still shows its axes and labels)


def readable(chart) -> alt.TopLevelMixin:
    """Labels a class can read from the back of a room: 14 px axis labels, long names not cut short."""
    return chart.configure_axis(labelFontSize=14, titleFontSize=15, labelLimit=260).configure_legend(
        labelFontSize=14, titleFontSize=14, labelLimit=260).configure_title(fontSize=16)


@dataclass(frozen=True)
class Figure:
    chart: alt.TopLevelMixin
    takeaway: str


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _prob(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def format_mb(x: float) -> str:
    """Megabytes as '12.3 MB', or as '512 kB' below one MB (tiny models)."""
    return f"{x:.1f} MB" if x >= 1 else f"{x * 1000:.0f} kB"


# --- Model ------------------------------------------------------------------------------------

def size_takeaway(sizes: pd.DataFrame) -> str:
    """From ``sizes.size_by_part`` with models 'float' and 'quantized'."""
    by = sizes.pivot(index="part", columns="model", values="mb")
    total_f, total_q = by["float"].sum(), by["quantized"].sum()
    emb_f, emb_q = by.loc["embedding", "float"], by.loc["embedding", "quantized"]
    if math.isclose(total_f, total_q, rel_tol=1e-3):
        return (f"Nothing is quantized: both models weigh {format_mb(total_f)}. "
                "Switch on LSTM or Linear in the sidebar.")
    head = (f"Quantized: {format_mb(total_q)} vs {format_mb(total_f)} float "
            f"({_pct(1 - total_q / total_f)} smaller, ×{total_f / total_q:.2f})")
    if math.isclose(emb_f, emb_q, rel_tol=1e-3):
        return head + f"; the float embedding is {_pct(emb_q / total_q)} of the quantized model, so it caps the saving."
    return head + f"; quantizing the embedding took it from {format_mb(emb_f)} to {format_mb(emb_q)}."


def size_chart(sizes: pd.DataFrame) -> Figure:
    """Stacked bars of size per part, float vs quantized."""
    chart = alt.Chart(sizes).mark_bar().encode(
        y=alt.Y("model:N", title=None, sort=["float", "quantized"]),
        x=alt.X("mb:Q", title="size (MB)", stack="zero"),
        color=alt.Color("part:N", sort=list(PART_NAMES), title="part"),
        order=alt.Order("part_index:Q"),
        tooltip=["model", "part", alt.Tooltip("mb:Q", format=".2f", title="MB"),
                 alt.Tooltip("share:Q", format=".0%", title="share of model")],
    ).transform_calculate(
        part_index=f"indexof({list(PART_NAMES)!r}, datum.part)"
    ).properties(height=MIN_HEIGHT)
    return Figure(readable(chart), size_takeaway(sizes))


# --- Speed & accuracy -------------------------------------------------------------------------

def _variant_bars(table: pd.DataFrame, field: str, title: str, tooltip: list) -> alt.Chart:
    """One bar per row of a ``benchmark_variants`` table, float in blue and the variants in orange."""
    return alt.Chart(table).mark_bar().encode(
        x=alt.X(f"{field}:Q", title=title),
        y=alt.Y("variant:N", sort=list(table["variant"]), title=None),
        color=alt.condition(alt.datum.variant == "fp32", alt.value("#4c78a8"), alt.value("#f58518")),
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
                f"{_pct(1 - smallest['size_mb'] / base)} less than float's {format_mb(base)}.")
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
    ).properties(height=260)
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


# --- Fidelity ---------------------------------------------------------------------------------

def next_word_chart(table: pd.DataFrame) -> Figure:
    """Grouped bars of next-word probabilities, from ``next_word.next_words_pair``."""
    order = list(dict.fromkeys(table["word"]))
    chart = alt.Chart(table).mark_bar().encode(
        x=alt.X("word:N", sort=order, title=None, axis=alt.Axis(labelAngle=-40)),
        xOffset=alt.XOffset("model:N", sort=["float", "quantized"]),
        y=alt.Y("prob:Q", title="probability", axis=alt.Axis(format="%")),
        color=alt.Color("model:N", scale=MODEL_COLORS),
        tooltip=["word", "model", alt.Tooltip("prob:Q", format=".2%"), "rank"],
    ).properties(height=260)
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
    ).properties(height=220)
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
    ).properties(height=260)
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
    values = pd.DataFrame({"weight": hist.values.astype(float)})
    bars = alt.Chart(values).mark_bar(opacity=0.8).encode(
        x=alt.X("weight:Q", bin=alt.Bin(maxbins=80), title=f"{hist.name} value"),
        y=alt.Y("count():Q", title="weights"),
    )
    layers = [bars]
    grid = hist.grid
    if 0 < len(grid) <= max_levels:
        levels = pd.DataFrame({"level": grid.astype(float)})
        rules = alt.Chart(levels).mark_rule(color="#e45756", opacity=0.35).encode(
            x="level:Q", tooltip=[alt.Tooltip("level:Q", format=".5f")])
        layers.append(rules)
    chart = readable(alt.layer(*layers).properties(height=240))
    max_err = float(np.abs(hist.errors).max()) if len(hist.errors) else 0.0
    if hist.scale:
        text = (f"Grid step {hist.scale:.2g}: the weights use {len(grid)} of 256 int8 levels"
                f"{'' if len(grid) <= max_levels else ' (too dense to draw)'}; the largest rounding error is "
                f"{max_err:.2g} ({max_err / hist.scale:.2f} of a step).")
    else:
        text = f"No single per-tensor grid (per-row or float16 weights); the largest rounding error is {max_err:.2g}."
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
    chart = readable(points.properties(height=320))
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
    return (f"Pick {pick['variant']}: {format_mb(pick['size_mb'])} ({_pct(pick['size_mb'] / base)} of float) for "
            f"{pick['delta_loss']:+.4f} loss, at {pick['tokens_per_s']:,.0f} tok/s.")


# --- text views (HTML, escaped) ---------------------------------------------------------------

def _word_html(word: str) -> str:
    return "<br>" if word == EOS else html.escape(word)


def paired_html(words: list[str], first_difference: int | None, other: list[str] | None = None) -> str:
    """Generated words with ``<eos>`` as a line break; the first difference is highlighted, and later
    words that differ from ``other`` (the other model's text, position by position) are tinted."""
    out = []
    for i, word in enumerate(words):
        piece = _word_html(word)
        if word != EOS and first_difference is not None and i >= first_difference:
            if i == first_difference:
                piece = f"<mark style='background:#f58518;color:white'>{piece}</mark>"
            elif other is None or i >= len(other) or other[i] != word:
                piece = f"<span style='color:#b35806;text-decoration:underline dotted'>{piece}</span>"
        out.append(piece)
    return "<div style='line-height:1.6'>" + " ".join(out).replace(" <br> ", "<br>") + "</div>"


def generation_speed_note(n_words: int, seconds: dict[str, float], label: str) -> str:
    """How fast each model wrote, from ``generate_side_by_side``'s finishing times."""
    fp, q = (max(seconds[name], 1e-9) for name in ("float", "quantized"))
    return (f"Written side by side, a thread each: float took {fp:.2f} s ({n_words / fp:,.0f} words/s), "
            f"{label} {q:.2f} s ({n_words / q:,.0f} words/s), ×{fp / q:.1f} the speed.")


def _shade(loss: float, top: float) -> str:
    if math.isnan(loss):
        return "transparent"
    alpha = min(1.0, loss / top) if top > 0 else 0.0
    return f"rgba(228,87,86,{0.08 + 0.8 * alpha:.2f})"


def surprisal_html(table: pd.DataFrame) -> str:
    """Two rows of words (float, quantized), each shaded by its loss; unknown words outlined and marked '?'."""
    losses = table[["loss_float", "loss_quant"]].to_numpy(dtype=float)
    top = float(np.nanmax(losses)) if np.isfinite(losses).any() else 1.0
    rows = []
    for label, column in (("float", "loss_float"), ("quantized", "loss_quant")):
        cells = []
        for row in table.itertuples():
            loss = getattr(row, column)
            style = f"background:{_shade(loss, top)};padding:1px 3px;border-radius:3px"
            if row.unknown:
                style += ";outline:1px dashed #555"
            title = "not in the vocabulary: scored as <unk>" if row.unknown else ""
            tip = html.escape(f"{loss:.2f} nats {title}".strip()) if not math.isnan(loss) else "unknown word"
            text = "⏎" if row.word == EOS else html.escape(row.word) + ("?" if row.unknown else "")
            cells.append(f"<span title='{tip}' style='{style}'>{text}</span>")
        rows.append(f"<div style='margin:4px 0'><b>{label}</b>: {' '.join(cells)}</div>")
    return "".join(rows)


def surprisal_takeaway(table: pd.DataFrame) -> str:
    known = table[~table["unknown"] & table["loss_float"].notna()]
    unknown = int(table["unknown"].sum())
    tail = f"; {unknown} unknown word{'s' * (unknown != 1)} (outlined) count as <unk>" if unknown else ""
    if known.empty:
        return "No word of this text is in the vocabulary" + tail + "."
    worst = known.loc[known["loss_float"].idxmax()]
    return (f"Most surprising: {worst['word']!r} ({worst['loss_float']:.1f} nats float, {worst['loss_quant']:.1f} "
            f"quantized); on average quantizing changes a word's loss by {known['delta'].mean():+.3f} nats{tail}.")


# --- Same tickets, same pick (Generate) -------------------------------------------------------

TICKETS_EXPLAINED = (
    "At every step each word of the vocabulary gets its own random ticket, and the word whose ticket, weighted by "
    "its probability, is highest gets written. Both models hold the same tickets, so they write the same word "
    "unless quantization moved their probabilities enough to hand the win to another word.")


def _odds(p: float) -> str:
    """A probability as a percentage, with enough decimals that odds just short of certain never read as 100 %."""
    if p >= 1 - 1e-9:  # identical distributions, up to float rounding
        return "100.0 %"
    if p < 0.999:
        return f"{100 * p:.1f} %"
    for decimals in range(2, 6):
        if round(100 * p, decimals) < 100:
            return f"{100 * p:.{decimals}f} %"
    return "over 99.9999 %"


def same_pick_takeaway(agreement: Agreement, temperature: float = 1.0) -> str:
    """Where the texts part and the mean same-pick odds before that, from ``generate.agreement``.

    At temperature 0 there are no odds: each model writes its most likely word, so the texts part
    exactly where the two most likely words first differ."""
    odds = agreement.mean_same_pick
    if odds is None:
        return "No words to compare."
    if temperature == 0:
        greedy = "At temperature 0 each model writes its most likely word"
        if agreement.first_difference is None:
            return f"{greedy}, and the two agree on it at all {agreement.agreed_words:,} steps: the texts never part."
        if agreement.first_difference == 0:
            return f"{greedy}, and already for the first word the two models' most likely words differ."
        return (f"{greedy}: the texts agree for {agreement.agreed_words:,} words and part at word "
                f"{agreement.first_difference + 1:,}, the first step where the two models' most likely words differ.")
    every = f" (a difference is due about once in {1 / (1 - odds):,.0f} words)" if 0.5 <= odds < 0.9995 else ""
    would = f"the two models would pick the same word {_odds(odds)} of the time{every}."
    if agreement.first_difference is None:
        return f"The texts agree on all {agreement.agreed_words:,} words; at each step {would}"
    if agreement.first_difference == 0:
        return f"The texts part at the first word, {'although there' if odds >= 0.5 else 'where'} {would}"
    return (f"The texts agree for {agreement.agreed_words:,} words and part at word "
            f"{agreement.first_difference + 1:,}; at each step until then {would}")


def same_pick_chart(agreement: Agreement, temperature: float = 1.0) -> Figure:
    """Same-pick probability (1 - total variation) at each step of the shared prefix; the parting word marked."""
    steps = pd.DataFrame({"word": np.arange(1, len(agreement.same_pick) + 1), "same_pick": agreement.same_pick})
    parted = agreement.first_difference is not None
    steps["texts"] = "agree"
    if parted:
        steps.loc[steps.index[-1], "texts"] = "part here"
    # The y axis runs up to 100 % from at most 90 %: odds a millionth apart (float16) stay a flat line
    # at the top instead of being stretched into a zigzag across the whole chart.
    low = min(0.9, math.floor(10 * min(agreement.same_pick, default=1.0)) / 10)
    base = alt.Chart(steps).encode(
        x=alt.X("word:Q", title="word", axis=alt.Axis(tickMinStep=1, format="d"),
                scale=alt.Scale(domain=[0, max(len(steps), 5)])),
        y=alt.Y("same_pick:Q", title="same pick", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[low, 1])),
        tooltip=["word", alt.Tooltip("same_pick:Q", format=".1%", title="same pick"), "texts"],
    )
    line = base.mark_line(color="#4c78a8")
    points = base.mark_point(filled=True, size=40).encode(
        color=alt.Color("texts:N", scale=alt.Scale(domain=["agree", "part here"], range=["#4c78a8", "#f58518"]),
                        title=None, legend=alt.Legend() if parted else None),
        size=alt.condition("datum.texts == 'part here'", alt.value(120), alt.value(30)))
    layers = [line, points]
    if parted:
        rule = alt.Chart(pd.DataFrame({"word": [agreement.first_difference + 1]})).mark_rule(
            color="#f58518", strokeDash=[4, 3]).encode(x="word:Q")
        layers.insert(0, rule)
    return Figure(readable(alt.layer(*layers).properties(height=240)), same_pick_takeaway(agreement, temperature))
