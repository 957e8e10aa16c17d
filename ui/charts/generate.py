"""The Generate tab's chart and wording: the same tickets, the same pick, and how fast each model wrote.

``same_pick_takeaway`` also reads the Fewer bits tab's two texts."""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from wlm.generate import Agreement

from .style import FLOAT, HEIGHT, QUANTIZED, Figure, readable

TICKETS_EXPLAINED = (
    "At every step each word of the vocabulary gets its own random ticket, and the word whose ticket, weighted by "
    "its probability, is highest gets written. Both models hold the same tickets, so they write the same word "
    "unless quantization moved their probabilities enough to hand the win to another word.")


def generation_speed_note(n_words: int, seconds: dict[str, float], label: str) -> str:
    """How fast each model wrote, from ``generate_side_by_side``'s finishing times."""
    fp, q = (max(seconds[name], 1e-9) for name in ("float", "quantized"))
    return (f"Written side by side, a thread each: float took {fp:.2f} s ({n_words / fp:,.0f} words/s), "
            f"{label} {q:.2f} s ({n_words / q:,.0f} words/s), {fp / q:.1f}× the speed of float.")


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
    # From the first word to the last step measured, in every layer: a layer without it would add zero.
    x_scale = alt.Scale(domain=[1, max(len(steps), 2)], nice=False, zero=False)
    base = alt.Chart(steps).encode(
        x=alt.X("word:Q", title="word", axis=alt.Axis(tickMinStep=1, format="d"), scale=x_scale),
        y=alt.Y("same_pick:Q", title="same pick", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[low, 1])),
        tooltip=["word", alt.Tooltip("same_pick:Q", format=".1%", title="same pick"), "texts"],
    )
    line = base.mark_line(color=FLOAT)
    points = base.mark_point(filled=True, size=40).encode(
        color=alt.Color("texts:N", scale=alt.Scale(domain=["agree", "part here"], range=[FLOAT, QUANTIZED]),
                        title=None, legend=alt.Legend() if parted else None),
        size=alt.condition("datum.texts == 'part here'", alt.value(120), alt.value(30)))
    layers = [line, points]
    if parted:
        rule = alt.Chart(pd.DataFrame({"word": [agreement.first_difference + 1]})).mark_rule(
            color=QUANTIZED, strokeDash=[4, 3]).encode(x=alt.X("word:Q", scale=x_scale))
        layers.insert(0, rule)
    return Figure(readable(alt.layer(*layers).properties(height=HEIGHT)), same_pick_takeaway(agreement, temperature))
