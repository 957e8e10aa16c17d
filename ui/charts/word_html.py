"""Words shaded as HTML (every word escaped): two texts where they part, and each word's surprise.

The Generate, Fewer bits and Walkthrough tabs show texts side by side; the Fidelity tab shows surprise."""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from wlm.corpus import EOS

from .style import ACCENT, QUANTIZED, QUANTIZED_TEXT, REFERENCE, rgba


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
                piece = f"<mark style='background:{QUANTIZED};color:white'>{piece}</mark>"
            elif other is None or i >= len(other) or other[i] != word:
                piece = f"<span style='color:{QUANTIZED_TEXT};text-decoration:underline dotted'>{piece}</span>"
        out.append(piece)
    return "<div style='line-height:1.6'>" + " ".join(out).replace(" <br> ", "<br>") + "</div>"


def _shade(loss: float, top: float) -> str:
    if math.isnan(loss):
        return "transparent"
    alpha = min(1.0, loss / top) if top > 0 else 0.0
    return rgba(ACCENT, 0.08 + 0.8 * alpha)


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
                style += f";outline:1px dashed {REFERENCE}"
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
