"""How surprised a model is by each word of a text: per-word loss, for one model or a float and a quantized one."""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from .corpus import EOS, UNK, Dictionary
from .errors import WlmError


def text_to_words(text: str) -> list[str]:
    """Words of ``text`` as the corpus reads them: a line break between lines becomes ``<eos>``."""
    lines = [line.split() for line in text.strip().splitlines()]
    words: list[str] = []
    for i, line in enumerate(lines):
        if i:
            words.append(EOS)
        words.extend(line)
    return words


@torch.no_grad()
def word_surprisal(model: nn.Module, dictionary: Dictionary, text: str) -> pd.DataFrame:
    """How surprised ``model`` is by each word of ``text``: -log p(word | the words before it), in nats.

    The first word is scored after a line break. A word outside the vocabulary is scored as ``<unk>``
    and flagged ``unknown``; if the vocabulary has no ``<unk>`` its loss is NaN and the line-break id
    stands in for it as context. Columns: position, word, unknown, loss.
    """
    words = text_to_words(text)
    if not words:
        raise WlmError("type at least one word to score")
    word2idx = dictionary.word2idx
    if EOS not in word2idx:
        raise WlmError(f"scoring starts after a line break, but this vocabulary has no {EOS} token")
    eos, unk = word2idx[EOS], word2idx.get(UNK)
    targets = [word2idx.get(w, unk) for w in words]
    inputs = [eos] + [eos if t is None else t for t in targets[:-1]]
    model.eval()
    logits, _ = model(torch.tensor(inputs, dtype=torch.long).view(-1, 1), model.init_hidden(1))
    logp = torch.log_softmax(logits[:, 0].double(), dim=-1)
    losses = [math.nan if t is None else -float(logp[i, t]) for i, t in enumerate(targets)]
    return pd.DataFrame({"position": range(len(words)), "word": words,
                         "unknown": [w not in word2idx for w in words], "loss": losses})


def surprisal_pair(float_model: nn.Module, quant_model: nn.Module, dictionary: Dictionary, text: str) -> pd.DataFrame:
    """``word_surprisal`` of both models side by side. Columns: position, word, unknown, loss_float,
    loss_quant, delta (quantized minus float)."""
    a = word_surprisal(float_model, dictionary, text)
    b = word_surprisal(quant_model, dictionary, text)
    table = a.rename(columns={"loss": "loss_float"})
    table["loss_quant"] = b["loss"]
    table["delta"] = table["loss_quant"] - table["loss_float"]
    return table
