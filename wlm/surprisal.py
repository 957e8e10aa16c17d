"""How surprised a model is by each word of a text: per-word loss, for one model or a float and a quantized one, and
what a long text comes to: the words quantizing changed most, and the mean loss along it."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pandas as pd
import torch
from torch import nn

from .corpus import EOS, Dictionary
from .errors import WlmError
from .generate import read_chunks


def text_to_words(text: str) -> list[str]:
    """Words of ``text`` as the corpus reads them: a line break between lines becomes ``<eos>``."""
    lines = [line.split() for line in text.strip().splitlines()]
    words: list[str] = []
    for i, line in enumerate(lines):
        if i:
            words.append(EOS)
        words.extend(line)
    return words


def _losses(logits: torch.Tensor, targets: list[int | None]) -> list[float]:
    """-log softmax(logits)[target] for each row of ``logits`` [n, vocabulary]; NaN where the target is None.

    logsumexp minus the target's logit is log_softmax at the target without a [n x vocabulary] result. It
    runs in float32, like the logits themselves: the loss moves by about 1e-6 nats from a float64 reckoning.
    """
    picked = torch.tensor([0 if t is None else t for t in targets], dtype=torch.long)
    loss = torch.logsumexp(logits, dim=-1) - logits.gather(1, picked.view(-1, 1)).view(-1)
    return [math.nan if t is None else value for t, value in zip(targets, loss.tolist())]


class _Scoring(NamedTuple):
    """A text read for scoring: its words, the ids a model reads (a line break first) and the ids it is
    scored on (None for an unknown word when the vocabulary has no ``<unk>``)."""

    words: list[str]
    unknown: list[bool]
    inputs: list[int]
    targets: list[int | None]


def _read(dictionary: Dictionary, text: str) -> _Scoring:
    words = text_to_words(text)
    if not words:
        raise WlmError("type at least one word to score")
    if EOS not in dictionary.word2idx:
        raise WlmError(f"scoring starts after a line break, but this vocabulary has no {EOS} token")
    eos = dictionary.word2idx[EOS]
    targets, outside = dictionary.encode(words, strict=False)  # None for an unknown word when there is no <unk>
    unknown = set(outside)
    inputs = [eos] + [eos if t is None else t for t in targets[:-1]]
    return _Scoring(words, [w in unknown for w in words], inputs, targets)


@torch.no_grad()
def _score(model: nn.Module, scoring: _Scoring, threads: int | None = None) -> list[float]:
    if threads is not None:  # a new thread starts from the last count any thread set: take the caller's
        torch.set_num_threads(threads)
    losses: list[float] = []
    for start, logits, _ in read_chunks(model, scoring.inputs):  # memory follows one chunk, not the text
        losses.extend(_losses(logits, scoring.targets[start:start + len(logits)]))
    return losses


def word_surprisal(model: nn.Module, dictionary: Dictionary, text: str) -> pd.DataFrame:
    """How surprised ``model`` is by each word of ``text``: -log p(word | the words before it), in nats.

    The first word is scored after a line break. A word outside the vocabulary is scored as ``<unk>``
    and flagged ``unknown``; if the vocabulary has no ``<unk>`` its loss is NaN and the line-break id
    stands in for it as context. Columns: position, word, unknown, loss.

    The text is read ``READ_CHUNK`` words at a time (``generate.read_chunks``), so a long text costs time but
    no more memory than a short one.
    """
    scoring = _read(dictionary, text)
    return pd.DataFrame({"position": range(len(scoring.words)), "word": scoring.words,
                         "unknown": scoring.unknown, "loss": _score(model, scoring)})


def surprisal_pair(float_model: nn.Module, quantized: nn.Module, dictionary: Dictionary, text: str) -> pd.DataFrame:
    """``word_surprisal`` of both models side by side. Columns: position, word, unknown, loss_float,
    loss_quant, delta (quantized minus float).

    The two models read the text at once, the quantized one in a thread of its own (each at the caller's torch
    thread count), as ``generate_side_by_side`` writes: with a core each the pair takes as long as the float
    model alone. Each model's losses are exactly those ``word_surprisal`` gives."""
    scoring = _read(dictionary, text)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="surprisal-quantized") as pool:
        quant = pool.submit(_score, quantized, scoring, torch.get_num_threads())
        try:
            loss_float = _score(float_model, scoring)
        finally:
            loss_quant = quant.result()  # waited for either way, and its error raised here
    table = pd.DataFrame({"position": range(len(scoring.words)), "word": scoring.words, "unknown": scoring.unknown,
                          "loss_float": loss_float, "loss_quant": loss_quant})
    table["delta"] = table["loss_quant"] - table["loss_float"]
    return table


def most_changed(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` words of a ``surprisal_pair`` table whose loss quantizing changed most (by size, ties in text
    order), largest first; words without a loss are left out."""
    known = table[table["delta"].notna()]
    ranked = known.assign(change=known["delta"].abs()).sort_values(["change", "position"], ascending=[False, True])
    return ranked.drop(columns="change").head(n).reset_index(drop=True)


def surprise_along(table: pd.DataFrame, bins: int) -> pd.DataFrame:
    """A ``surprisal_pair`` table as at most ``bins`` runs of consecutive words of one length (the last may be
    shorter), each with the mean loss of its words under either model (words without a loss left out; NaN for
    a run with none). Columns: first, last (0-based positions), words, loss_float, loss_quant, delta."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    width = max(1, math.ceil(len(table) / bins))
    run = table["position"].to_numpy() // width
    grouped = table.groupby(run, sort=True)
    out = pd.DataFrame({"first": grouped["position"].min(), "last": grouped["position"].max(),
                        "words": grouped["position"].size(),
                        "loss_float": grouped["loss_float"].mean(), "loss_quant": grouped["loss_quant"].mean()})
    out["delta"] = out["loss_quant"] - out["loss_float"]
    return out.reset_index(drop=True)
