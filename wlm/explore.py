"""Small measurements the interactive demo shows: sizes per part, next-word odds, per-word
surprise and a thread sweep.

Everything here returns plain values or pandas DataFrames, so any front end can lay them out.
"""
from __future__ import annotations

import ctypes
import math
import sys

import pandas as pd
import torch
from torch import nn

from .corpus import EOS, UNK, Dictionary
from .errors import WlmError
from .evaluate import evaluate, num_threads
from .generate import encode_prompt
from .model import LSTMModel
from .quantize import PARTS, QuantSpec, module_sizes, quantize, storage

MB = 1e6


# --- size ------------------------------------------------------------------------------------

def size_by_part(models: dict[str, nn.Module]) -> pd.DataFrame:
    """Serialized size of each part of each model. Columns: model, part, bytes, mb, share (of that model)."""
    rows = []
    for label, model in models.items():
        sizes = module_sizes(model)
        total = sum(sizes.values())
        for part in PARTS:
            rows.append({"model": label, "part": part, "bytes": sizes[part], "mb": sizes[part] / MB,
                         "share": sizes[part] / total})
    return pd.DataFrame(rows, columns=["model", "part", "bytes", "mb", "share"])


def part_table(sizes: pd.DataFrame, weights: dict[str, int], spec: QuantSpec) -> pd.DataFrame:
    """The Model tab's table: per part (and in total) its weights, MB in the float and the quantized
    model (from ``size_by_part`` with models labelled float and quantized), and how ``spec`` stores it."""
    mb = sizes.pivot(index="part", columns="model", values="mb").loc[list(PARTS)]
    stored = storage(spec)
    table = pd.DataFrame({"weights": [weights[p] for p in PARTS], "float_mb": mb["float"].to_numpy(),
                          "quantized_mb": mb["quantized"].to_numpy(),
                          "quantized_storage": [stored[p] for p in PARTS]}, index=list(PARTS))
    table.index.name = "part"
    table.loc["total"] = [sum(weights.values()), table["float_mb"].sum(), table["quantized_mb"].sum(), ""]
    return table


def release_memory() -> None:
    """Give memory freed by large temporary tensors back to the operating system.

    Quantizing and evaluating make model-sized temporary copies. Their tensors are freed as soon as
    the last reference goes (no full garbage collection is needed: it costs ~0.1 s in a server
    with Streamlit, pandas and torch loaded), but glibc keeps the freed blocks in its heap, so a
    long-running server holding several variants would grow by hundreds of MB; ``malloc_trim``
    returns them. Elsewhere (no glibc) this does nothing.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # another C library (e.g. musl)
            pass


# --- next word and surprise ------------------------------------------------------------------

def _context_ids(dictionary: Dictionary, prompt: str | None) -> tuple[list[int], list[str]]:
    """Prompt ids; an empty prompt starts from a line break, the state the corpus begins each line in."""
    ids, unknown = encode_prompt(dictionary, prompt)
    if not ids:
        if EOS not in dictionary.word2idx:
            raise WlmError(f"an empty prompt starts from {EOS}, which this vocabulary lacks; type a few words")
        ids = [dictionary.word2idx[EOS]]
    return ids, unknown


@torch.no_grad()
def _next_word_probs(model: nn.Module, ids: list[int]) -> torch.Tensor:
    model.eval()
    logits, _ = model(torch.tensor(ids, dtype=torch.long).view(-1, 1), model.init_hidden(1))
    return torch.softmax(logits[-1, 0].double(), dim=-1)


def top_next_words(model: nn.Module, dictionary: Dictionary, prompt: str | None, k: int = 10) -> pd.DataFrame:
    """The ``k`` most likely next words after ``prompt``. Columns: rank, word, prob."""
    if k < 1:
        raise WlmError(f"k must be at least 1, got {k}")
    ids, _ = _context_ids(dictionary, prompt)
    probs = _next_word_probs(model, ids)
    top = torch.topk(probs, min(k, probs.numel()))
    return pd.DataFrame({"rank": range(1, len(top.indices) + 1),
                         "word": [dictionary.idx2word[int(i)] for i in top.indices],
                         "prob": top.values.float().numpy()})


def compare_next_words(float_model: nn.Module, quant_model: nn.Module, dictionary: Dictionary,
                       prompt: str | None, k: int = 10) -> pd.DataFrame:
    """Both models' probabilities for the union of their top-``k`` next words, in the float model's order.

    Long format, one row per (word, model). Columns: word, model ('float' | 'quantized'), prob, rank
    (that model's rank of the word, 1 = most likely).
    """
    ids, _ = _context_ids(dictionary, prompt)
    probs = {"float": _next_word_probs(float_model, ids), "quantized": _next_word_probs(quant_model, ids)}
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


# --- speed -----------------------------------------------------------------------------------

def thread_sweep(model: LSTMModel, ids: torch.Tensor, specs: dict[str, QuantSpec] | list[QuantSpec],
                 threads_list: list[int], max_tokens: int | None = None) -> pd.DataFrame:
    """Throughput of each variant at each thread count, on the same tokens.

    Columns: variant, threads, tokens_per_s, seconds, loss.
    """
    if isinstance(specs, list):
        specs = {spec.label: spec for spec in specs}
    rows = []
    for label, spec in specs.items():
        variant = quantize(model, spec)
        for threads in threads_list:
            with num_threads(threads):
                result = evaluate(variant, ids, max_tokens=max_tokens)
            rows.append({"variant": label, "threads": threads, "tokens_per_s": result.tokens_per_s,
                         "seconds": result.seconds, "loss": result.loss})
    return pd.DataFrame(rows, columns=["variant", "threads", "tokens_per_s", "seconds", "loss"])


def tokens_for_seconds(model: nn.Module, ids: torch.Tensor, seconds: float, *, probe_tokens: int = 200,
                       step: int = 100) -> int:
    """About how many tokens ``model`` evaluates in ``seconds``, from timing a short probe."""
    probe = evaluate(model, ids, max_tokens=min(probe_tokens, len(ids)))
    wanted = int(probe.tokens_per_s * seconds) // step * step
    return max(step, min(wanted, len(ids) // step * step or len(ids)))


def with_delta_loss(table: pd.DataFrame) -> pd.DataFrame:
    """A ``compare_variants`` table with delta_loss: each variant's loss minus the float model's."""
    out = table.copy()
    out["delta_loss"] = out["loss"] - float(out.loc[out["variant"] == "fp32", "loss"].iloc[0])
    return out
