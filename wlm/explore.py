"""Small measurements the interactive demo shows: sizes per part, next-word odds, per-word
surprise, a thread sweep, and a quantized model written to (and read back from) one file.

Everything here returns plain values or pandas DataFrames, so any front end can lay them out.
"""
from __future__ import annotations

import ctypes
import io
import math
import os
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import torch
from torch import nn

from .checkpoint import LoadedModel, load_model
from .corpus import EOS, UNK, Dictionary
from .errors import WlmError
from .evaluate import evaluate, num_threads
from .generate import encode_prompt
from .model import LSTMModel, ModelConfig
from .quantize import PARTS, QuantSpec, module_sizes, quantize

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


# --- a quantized model in one file -----------------------------------------------------------

def portable_state_dict(model: nn.Module) -> dict:
    """The model's state_dict with quantized LSTM weights as plain (quantized) tensors.

    A dynamically quantized LSTM keeps its weights in packed script objects that
    ``torch.load(weights_only=True)`` refuses to read; we store the tensors inside them under the
    float model's names (``rnn.weight_ih_l0`` ...) instead, so the file loads without running code.
    """
    state = model.state_dict()
    if hasattr(model.rnn, "_weight_bias"):
        state = {k: v for k, v in state.items() if not k.startswith("rnn.")}
        packed = model.rnn._weight_bias()
        for kind in ("weight", "bias"):
            for name, tensor in packed[kind].items():
                state[f"rnn.{name}"] = tensor
    return state


def quantized_bytes(model: nn.Module) -> bytes:
    """``torch.save`` of ``portable_state_dict(model)``: the file the demo offers for download."""
    buffer = io.BytesIO()
    torch.save(portable_state_dict(model), buffer)
    return buffer.getvalue()


def load_quantized(file: str | os.PathLike | BinaryIO | bytes, config: ModelConfig, spec: QuantSpec) -> nn.Module:
    """Rebuild a quantized model from a ``quantized_bytes`` file: same config, same spec, same outputs."""
    if isinstance(file, bytes):
        file = io.BytesIO(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean "not this format"
        raise WlmError(f"the quantized model file cannot be read ({str(exc).splitlines()[0]}); "
                       "it must come from the demo's download button") from None
    if not isinstance(state, dict):
        raise WlmError("the quantized model file does not hold a state_dict")
    model = quantize(LSTMModel(config).eval(), spec)
    # Module versions decide how quantized modules read their entries; a fresh model of the same
    # spec carries the right ones for this torch.
    metadata = getattr(model.state_dict(), "_metadata", {})
    parts = {name: OrderedDict() for name in ("encoder", "rnn", "decoder")}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head not in parts:
            raise WlmError(f"the quantized model file has an unexpected entry {key!r}; it must come from the "
                           "demo's download button")
        parts[head][rest] = value
    for name, sub in parts.items():
        sub._metadata = {k.removeprefix(name).removeprefix("."): v for k, v in metadata.items()
                         if k == name or k.startswith(name + ".")}
    try:
        for name, sub in parts.items():
            module = getattr(model, name)
            if name == "rnn" and hasattr(module, "set_weight_bias"):
                # A quantized LSTM is rebuilt from its tensors (see portable_state_dict).
                module.set_weight_bias(sub)
            else:
                module.load_state_dict(sub)
    except (RuntimeError, KeyError, AttributeError) as exc:
        raise WlmError(f"the file does not fit {spec.label} with {config} ({str(exc).splitlines()[0]}); "
                       "load it with the config and spec it was saved with") from None
    return model.eval()


def load_note(config: ModelConfig, spec: QuantSpec, file_name: str) -> str:
    """Python that loads a downloaded quantized model back (shown next to the download button)."""
    fields = ", ".join(f"{k}={v!r}" for k, v in spec.to_dict().items())
    return (
        "import wlm\n"
        "from wlm.explore import load_quantized\n"
        "from wlm.model import ModelConfig\n"
        "from wlm.quantize import QuantSpec\n\n"
        f"model = load_quantized({file_name!r},\n"
        f"                       ModelConfig(ntoken={config.ntoken}, ninp={config.ninp}, nhid={config.nhid}, "
        f"nlayers={config.nlayers}),\n"
        f"                       QuantSpec({fields}))\n"
    )


# --- checkpoints given as bytes (uploads) ----------------------------------------------------

def load_checkpoint_bytes(data: bytes, name: str) -> LoadedModel:
    """Load an uploaded ``.pth`` state_dict or ``.safetensors`` file, never running code inside it."""
    suffix = ".safetensors" if name.lower().endswith(".safetensors") else ".pth"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            loaded = load_model(path)
        except WlmError as exc:
            raise WlmError(str(exc).replace(str(path), repr(name))) from None
    loaded.source = f"upload {name}"
    return loaded
