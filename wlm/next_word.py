"""The words a float and a quantized model expect next after a prompt, side by side."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .corpus import EOS, Dictionary
from .errors import WlmError
from .generate import read_prompt


def _context_ids(dictionary: Dictionary, prompt: str | None) -> list[int]:
    """Prompt ids; an empty prompt starts from a line break, the state the corpus begins each line in."""
    ids, _ = dictionary.encode_prompt(prompt)
    if not ids:
        if EOS not in dictionary.word2idx:
            raise WlmError(f"an empty prompt starts from {EOS}, which this vocabulary lacks; type a few words")
        ids = [dictionary.word2idx[EOS]]
    return ids


@torch.no_grad()
def _next_word_probs(model: nn.Module, ids: list[int]) -> torch.Tensor:
    # Read in chunks: only the last position's logits are wanted, so a long prompt costs no more memory.
    logits, _ = read_prompt(model, ids)
    return torch.softmax(logits.double(), dim=-1)


def next_words_pair(float_model: nn.Module, quantized: nn.Module, dictionary: Dictionary,
                    prompt: str | None, k: int = 10) -> pd.DataFrame:
    """Both models' probabilities for the union of their top-``k`` next words, in the float model's order.

    Long format, one row per (word, model). Columns: word, model ('float' | 'quantized'), prob, rank
    (that model's rank of the word, 1 = most likely).
    """
    if k < 1:
        raise WlmError(f"k must be at least 1, got {k}")
    ids = _context_ids(dictionary, prompt)
    probs = {"float": _next_word_probs(float_model, ids), "quantized": _next_word_probs(quantized, ids)}
    k = min(k, probs["float"].numel())
    words: list[int] = []
    for name in ("float", "quantized"):
        for index in torch.topk(probs[name], k).indices.tolist():
            if index not in words:
                words.append(index)
    words.sort(key=lambda i: -float(probs["float"][i]))
    rows = []
    for name, p in probs.items():
        rank = torch.argsort(p, descending=True).argsort()  # position of each word in this model's ranking
        for index in words:
            rows.append({"word": dictionary.idx2word[index], "model": name, "prob": float(p[index]),
                         "rank": int(rank[index]) + 1})
    return pd.DataFrame(rows, columns=["word", "model", "prob", "rank"])
