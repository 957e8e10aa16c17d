"""Words shaded as HTML (every word escaped): two texts where they part, and each word's surprise.

The Generate, Fewer bits and Walkthrough tabs show texts side by side; the Fidelity tab shows surprise: a short
text word by word, float and quantized stacked under each word; a long one as a summary (its surprise along the
text, and the words quantizing changed most)."""
from __future__ import annotations

import html
import math

import altair as alt
import numpy as np
import pandas as pd

from wlm.corpus import EOS
from wlm.surprisal import most_changed, surprise_along

from .style import ACCENT, HEIGHT, MODEL_COLORS, QUANTIZED, QUANTIZED_TEXT, REFERENCE, Figure, readable, rgba

# Where two texts part: the first differing word is marked, and each later word that differs from the other
# text's word at the same place is tinted. One style each, for the texts and their legend alike.
PARTED = f"background:{QUANTIZED};color:white"
DIFFERS = f"color:{QUANTIZED_TEXT};text-decoration:underline dotted"


def _escaped(word: str) -> str:
    return "<br>" if word == EOS else html.escape(word)


def paired_html(words: list[str], first_difference: int | None, other: list[str] | None = None) -> str:
    """Generated words with ``<eos>`` as a line break; the first difference is highlighted, and later
    words that differ from ``other`` (the other model's text, position by position) are tinted."""
    out = []
    for i, word in enumerate(words):
        piece = _escaped(word)
        if word != EOS and first_difference is not None and i >= first_difference:
            if i == first_difference:
                piece = f"<mark style='{PARTED}'>{piece}</mark>"
            elif other is None or i >= len(other) or other[i] != word:
                piece = f"<span style='{DIFFERS}'>{piece}</span>"
        out.append(piece)
    return "<div style='line-height:1.6'>" + " ".join(out).replace(" <br> ", "<br>") + "</div>"


def paired_legend(first_difference: int | None, other: str = "the other text") -> str:
    """The key to ``paired_html``'s two marks, drawn in their own styles (a caption's HTML)."""
    if first_difference is None:
        return "The two texts never part, so no word is marked."
    return (f"<mark style='{PARTED}'>word</mark> the first word where the two texts part (word "
            f"{first_difference + 1:,}); <span style='{DIFFERS}'>word</span> a later word that differs from "
            f"{other}'s word at the same place. Plain words after the parting are the same in both.")


def _shade(loss: float, top: float) -> str:
    if math.isnan(loss):
        return "transparent"
    alpha = min(1.0, loss / top) if top > 0 else 0.0
    return rgba(ACCENT, 0.08 + 0.8 * alpha)


SHOWN_WORDS = 200  # a text up to this long is shaded word by word; a longer one is summed up instead
MOST_CHANGED = 10  # a long text's words listed with the largest change in loss
ALONG_RUNS = 100  # a long text's surprise is charted as the mean of at most this many runs of words

_BLOCK = "display:inline-flex;flex-direction:column;vertical-align:top;margin:0 2px 6px 0;border-radius:3px"
_TOP = "display:block;padding:0 4px;border-radius:3px 3px 0 0"
_BOTTOM = "display:block;padding:0 4px;border-radius:0 0 3px 3px;font-size:0.75em;text-align:center"


def _change(delta: float) -> str:
    if math.isnan(delta):
        return "–"
    shown = f"{delta:+.2f}"
    return "0.00" if shown in ("+0.00", "-0.00") else shown


def surprisal_html(table: pd.DataFrame) -> str:
    """Each word of a ``surprisal_pair`` table as one block: the word on top, shaded by the float model's loss,
    and under it a cell shaded by the quantized model's loss with the change (quantized minus float, nats), so
    the two stay together however the text wraps. One scale for both (darker = more surprised); both losses
    in the word's tooltip; an unknown word outlined and marked '?'. Meant for up to ``SHOWN_WORDS`` words."""
    losses = table[["loss_float", "loss_quant"]].to_numpy(dtype=float)
    top = float(np.nanmax(losses)) if np.isfinite(losses).any() else 1.0
    cells = [f"<span style='{_BLOCK};color:{REFERENCE}'><span style='{_TOP}'><i>float</i></span>"
             f"<span style='{_BOTTOM}'><i>quantized, change</i></span></span>"]
    for row in table.itertuples():
        style = _BLOCK + (f";outline:1px dashed {REFERENCE}" if row.unknown else "")
        if math.isnan(row.loss_float) or math.isnan(row.loss_quant):
            tip = "not in the vocabulary, which has no <unk>: not scored"
        else:
            tip = (f"float {row.loss_float:.3f} nats, quantized {row.loss_quant:.3f} nats, change {row.delta:+.3f}"
                   + ("; not in the vocabulary: scored as <unk>" if row.unknown else ""))
        text = "⏎" if row.word == EOS else html.escape(row.word) + ("?" if row.unknown else "")
        cells.append(f"<span title='{html.escape(tip)}' style='{style}'>"
                     f"<span style='{_TOP};background:{_shade(row.loss_float, top)}'>{text}</span>"
                     f"<span style='{_BOTTOM};background:{_shade(row.loss_quant, top)}'>{_change(row.delta)}</span>"
                     "</span>")
    return "<div style='line-height:1.3'>" + " ".join(cells) + "</div>"


SURPRISAL_KEY = ("Each word: on top shaded by the float model's surprise (its loss on the word), below by the "
                 "quantized model's, with how much quantizing changed it in nats; darker = more surprised. Hover "
                 "over a word for both losses.")


def _context(words: list[str], i: int, around: int = 3) -> str:
    shown = ["⏎" if w == EOS else w for w in words[max(0, i - around):i + around + 1]]
    shown[min(i, around)] = f"[{shown[min(i, around)]}]"
    return ("… " if i > around else "") + " ".join(shown) + (" …" if i + around + 1 < len(words) else "")


def most_changed_table(table: pd.DataFrame, n: int = MOST_CHANGED) -> pd.DataFrame:
    """The ``n`` words whose loss quantizing changed most, each in its place in the text, for a table."""
    words = table["word"].tolist()
    top = most_changed(table, n)
    return pd.DataFrame({  # the numbers first, the place last: a phone shows the first columns
        "word": ["⏎" if w == EOS else w for w in top["word"]], "change": top["delta"].round(3),
        "float (nats)": top["loss_float"].round(3), "quantized (nats)": top["loss_quant"].round(3),
        "at word": [f"{p + 1:,}" for p in top["position"]],
        "in the text": [_context(words, p) for p in top["position"]]})


def surprise_along_chart(table: pd.DataFrame, runs: int = ALONG_RUNS) -> Figure:
    """Each model's mean loss over runs of consecutive words along a long text, from ``surprise_along``."""
    along = surprise_along(table, runs)
    width = int(along["words"].iloc[0])
    frame = along.assign(middle=(along["first"] + along["last"]) / 2 + 1,
                         words_shown=[f"{a + 1:,}–{b + 1:,}" for a, b in zip(along["first"], along["last"])])
    long = frame.melt(id_vars=["middle", "words_shown", "delta"], value_vars=["loss_float", "loss_quant"],
                      var_name="model", value_name="loss")
    long["model"] = long["model"].map({"loss_float": "float", "loss_quant": "quantized"})
    base = alt.Chart(long).encode(
        x=alt.X("middle:Q", title="word of the text", axis=alt.Axis(format=",d"),
                scale=alt.Scale(domain=[1, max(len(table), 2)], nice=False)),
        y=alt.Y("loss:Q", title="surprise (nats)", scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", scale=MODEL_COLORS, title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("words_shown:N", title="words"), "model:N",
                 alt.Tooltip("loss:Q", format=".3f", title="mean loss (nats)"),
                 alt.Tooltip("delta:Q", format="+.3f", title="quantized − float")])
    # Float wide and pale, quantized thin on top: where the two agree, both lines still show.
    chart = alt.layer(
        base.transform_filter("datum.model == 'float'").mark_line(strokeWidth=6, opacity=0.45),
        base.transform_filter("datum.model == 'quantized'").mark_line(strokeWidth=1.5),
    ).properties(height=HEIGHT)
    scored = along.dropna(subset=["delta"])
    if scored.empty:
        return Figure(readable(chart), "No word of this text could be scored.")
    widest = scored.loc[scored["delta"].abs().idxmax()]
    last = int(along["words"].iloc[-1])
    shorter = f", the last of {last:,}" if last != width else ""
    text = (f"Each point is the mean loss of {width:,} consecutive words ({len(along):,} points for "
            f"{len(table):,} words{shorter}). The two models' means differ by at most {abs(widest['delta']):.3f} nats "
            f"(words {int(widest['first']) + 1:,}–{int(widest['last']) + 1:,}); along the text the float "
            f"model's mean runs from {scored['loss_float'].min():.2f} to {scored['loss_float'].max():.2f} nats.")
    return Figure(readable(chart), text)


def surprisal_takeaway(table: pd.DataFrame, outlined: bool = True) -> str:
    """The most surprising known word and the mean change; ``outlined``: the words are shown, unknown ones
    outlined."""
    known = table[~table["unknown"] & table["loss_float"].notna()]
    unknown = int(table["unknown"].sum())
    mark = " (outlined)" if outlined else ""
    tail = (f"; {unknown:,} unknown word{'s' * (unknown != 1)}{mark} count{'s' * (unknown == 1)} as <unk>"
            if unknown else "")
    if known.empty:
        return "No word of this text is in the vocabulary" + tail + "."
    worst = known.loc[known["loss_float"].idxmax()]
    return (f"Most surprising: {worst['word']!r} ({worst['loss_float']:.1f} nats float, {worst['loss_quant']:.1f} "
            f"quantized); on average quantizing changes a word's loss by {known['delta'].mean():+.3f} nats{tail}.")
