"""How surprised a model is by each word of a text: per-word loss, for one model or a float and a quantized one."""
from __future__ import annotations

import math

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


@torch.no_grad()
def word_surprisal(model: nn.Module, dictionary: Dictionary, text: str) -> pd.DataFrame:
    """How surprised ``model`` is by each word of ``text``: -log p(word | the words before it), in nats.

    The first word is scored after a line break. A word outside the vocabulary is scored as ``<unk>``
    and flagged ``unknown``; if the vocabulary has no ``<unk>`` its loss is NaN and the line-break id
    stands in for it as context. Columns: position, word, unknown, loss.

    The text is read ``READ_CHUNK`` words at a time (``generate.read_chunks``), so a long text costs time but
    no more memory than a short one.
    """
    words = text_to_words(text)
    if not words:
        raise WlmError("type at least one word to score")
    if EOS not in dictionary.word2idx:
        raise WlmError(f"scoring starts after a line break, but this vocabulary has no {EOS} token")
    eos = dictionary.word2idx[EOS]
    targets, outside = dictionary.encode(words, strict=False)  # None for an unknown word when there is no <unk>
    unknown = set(outside)
    inputs = [eos] + [eos if t is None else t for t in targets[:-1]]
    losses: list[float] = []
    for start, logits, _ in read_chunks(model, inputs):  # memory follows one chunk, not the text
        losses.extend(_losses(logits, targets[start:start + len(logits)]))
    return pd.DataFrame({"position": range(len(words)), "word": words,
                         "unknown": [w in unknown for w in words], "loss": losses})


def surprisal_pair(float_model: nn.Module, quantized: nn.Module, dictionary: Dictionary, text: str) -> pd.DataFrame:
    """``word_surprisal`` of both models side by side. Columns: position, word, unknown, loss_float,
    loss_quant, delta (quantized minus float)."""
    a = word_surprisal(float_model, dictionary, text)
    b = word_surprisal(quantized, dictionary, text)
    table = a.rename(columns={"loss": "loss_float"})
    table["loss_quant"] = b["loss"]
    table["delta"] = table["loss_quant"] - table["loss_float"]
    return table
