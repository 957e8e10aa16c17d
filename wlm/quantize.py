"""Dynamic quantization variants of a float model, and what they weigh.

``QuantSpec`` says which parts to quantize and how; ``quantize`` builds a new model from it
with ``torch.ao.quantization.quantize_dynamic`` and leaves the float model untouched.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.ao import quantization as tq

from .errors import WlmError
from .model import PARTS, LSTMModel
from .qengine import packing
from .torch_internals import with_children

DTYPES = ("qint8", "float16")  # the weight dtypes for LSTM and Linear, in the order the app offers them


@dataclass(frozen=True)
class QuantSpec:
    lstm: bool = False
    linear: bool = False
    embedding: bool = False
    dtype: str = "qint8"  # for LSTM and Linear weights
    per_channel: bool = False  # Linear only, qint8 only
    embedding_bits: int = 8

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise WlmError(f"quantization dtype {self.dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
        if self.embedding_bits not in (8, 4):
            raise WlmError(f"embedding bits must be 8 or 4, got {self.embedding_bits}")
        if self.per_channel and self.dtype != "qint8":
            raise WlmError("per-channel quantization needs dtype qint8; "
                           "float16 weights have no scale to split per channel")

    @property
    def is_float(self) -> bool:
        return not (self.lstm or self.linear or self.embedding)

    @property
    def label(self) -> str:
        if self.is_float:
            return "fp32"
        for name, spec in PRESETS.items():
            if spec == self:
                return name
        parts = [p for p, on in (("lstm", self.lstm), ("linear", self.linear)) if on]
        text = "+".join(parts)
        if parts:
            text += f" {self.dtype}" + (" per-channel" if self.per_channel else "")
        if self.embedding:
            text += ("+" if parts else "") + f"emb{self.embedding_bits}"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, QuantSpec] = {
    "fp32": QuantSpec(),
    "tutorial": QuantSpec(lstm=True, linear=True),
    "int8+emb8": QuantSpec(lstm=True, linear=True, embedding=True),
    "int8+emb4": QuantSpec(lstm=True, linear=True, embedding=True, embedding_bits=4),
    "float16": QuantSpec(lstm=True, linear=True, dtype="float16"),
    "per-channel": QuantSpec(lstm=True, linear=True, per_channel=True),
}


def preset(name: str) -> QuantSpec:
    if name not in PRESETS:
        raise WlmError(f"unknown variant {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


class BagEmbedding(nn.Module):
    """An embedding lookup done by ``nn.EmbeddingBag`` with one index per bag.

    A 4-bit quantized ``nn.Embedding`` in torch 2.13 returns rows of width dim/4; the quantized
    ``EmbeddingBag`` unpacks 4-bit rows correctly, so 4-bit embeddings go through this.
    """

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding_dim = embedding.embedding_dim
        self.bag = nn.EmbeddingBag(embedding.num_embeddings, embedding.embedding_dim, mode="sum")
        self.bag.weight = embedding.weight

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        flat = input.reshape(-1)
        offsets = torch.arange(flat.numel(), dtype=torch.long)
        return self.bag(flat, offsets).reshape(*input.shape, self.embedding_dim)


def _weight_qconfig(spec: QuantSpec, module: str):
    if spec.dtype == "float16":
        return tq.float16_dynamic_qconfig
    if spec.per_channel and module == "linear":
        return tq.per_channel_dynamic_qconfig
    return tq.default_dynamic_qconfig


def _part_keys(spec: QuantSpec) -> dict[str, tuple]:
    """What each quantized submodule depends on: two variants with the same key share the part."""
    keys = {"embedding": ("embedding", spec.embedding_bits), "lstm": ("lstm", spec.dtype),
            "linear": ("linear", spec.dtype, spec.per_channel)}
    return {part.attr: keys[part.flag] for part in PARTS if getattr(spec, part.flag)}


def _quantize_parts(model: LSTMModel, spec: QuantSpec, names: set[str]) -> dict[str, nn.Module]:
    """Fresh quantized copies of the submodules ``names`` (a subset of what ``spec`` quantizes)."""
    # A shell with its own child table: the other parts become placeholders, so quantize_dynamic
    # never sees (or marks) the float model's modules.
    shell = with_children(model, {name: copy.deepcopy(module) if name in names else nn.Identity()
                                  for name, module in model.named_children()})
    qconfig_spec: dict = {}
    if "rnn" in names:
        qconfig_spec[nn.LSTM] = _weight_qconfig(spec, "lstm")
    if "decoder" in names:
        qconfig_spec[nn.Linear] = _weight_qconfig(spec, "linear")
    if "encoder" in names:
        if spec.embedding_bits == 4:
            shell.encoder = BagEmbedding(shell.encoder)
            qconfig_spec[nn.EmbeddingBag] = tq.float_qparams_weight_only_qconfig_4bit
        else:
            qconfig_spec[nn.Embedding] = tq.float_qparams_weight_only_qconfig
    with packing():  # this process's engine, whatever another thread's engine sweep has switched to
        quantized = tq.quantize_dynamic(shell.eval(), qconfig_spec, inplace=True)
    return {name: getattr(quantized, name) for name in names}


def quantize(model: LSTMModel, spec: QuantSpec, parts: dict | None = None) -> nn.Module:
    """A dynamically quantized variant of ``model``; the float model itself when ``spec`` quantizes nothing.

    Only the parts being quantized are copied. The parts left in float are the float model's own
    modules, shared and only read: a cached tutorial variant would otherwise carry its own copy of
    the 68 MB float embedding. ``model`` is never modified.

    ``parts``, a dict kept by the caller for one float model, collects quantized parts and lends
    them to later variants: switching the embedding on after the tutorial's variant only quantizes
    the embedding, and both variants share one quantized LSTM and decoder. Quantized modules are
    only read in ``forward``, so sharing them is as safe as sharing the float ones.
    """
    if spec.is_float:
        return model
    keys = _part_keys(spec)
    known = parts if parts is not None else {}
    missing = {name for name, key in keys.items() if key not in known}
    if missing:  # a variant whose parts are all lent needs no quantize_dynamic pass at all
        for name, module in _quantize_parts(model, spec, missing).items():
            known[keys[name]] = module
    quantized = with_children(model, {name: known[keys[name]] if name in keys else module
                                      for name, module in model.named_children()})
    quantized.training = False  # not .eval(): that would also switch the shared float modules
    return quantized


def storage(spec: QuantSpec) -> dict[str, str]:
    """How a model quantized by ``spec`` stores each part's weights, in words."""
    if spec.dtype == "float16":
        lstm = decoder = "float16 weights"
    else:
        lstm = "int8 weights, float32 biases"
        decoder = "int8 weights (a scale per row), float32 biases" if spec.per_channel else lstm
    stored = {"embedding": f"{spec.embedding_bits}-bit, scale and offset per row", "lstm": lstm, "linear": decoder}
    return {part.name: stored[part.flag] if getattr(spec, part.flag) else "float32" for part in PARTS}
