"""What a model weighs: serialized bytes and weights per part, and the Model tab's table of both."""
from __future__ import annotations

import contextlib
import io

import pandas as pd
import torch
from torch import nn

from .model import PART_NAMES, PARTS
from .quantize import QuantSpec, storage
from .torch_internals import packed_lstm_weights


def format_mb(x: float) -> str:
    """Megabytes as '12.3 MB', or as '512 kB' below one MB (tiny models)."""
    return f"{x:.1f} MB" if x >= 1 else f"{x * 1000:.0f} kB"

MB = 1e6


class _ByteCounter(io.RawIOBase):
    """A write-only file that keeps nothing but its size: where its furthest write ended. It can seek,
    since ``torch.save`` under ``skip_data`` steps over the bytes of the storages it does not write."""

    def __init__(self):
        super().__init__()
        self.position = 0
        self.written = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        self.position += size
        self.written = max(self.written, self.position)
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.written}[whence]
        self.position = start + offset
        return self.position

    def tell(self) -> int:
        return self.position


def _plain_tensors(state: dict) -> bool:
    return all(isinstance(value, torch.Tensor) and not value.is_quantized for value in state.values())


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the tutorial's "Size", counted as it is written
    (no model-sized copy is kept; the count equals the file's size)."""
    state = model.state_dict()
    counter = _ByteCounter()
    # A file of float tensors can be laid out without reading their bytes: skip_data leaves the space
    # they take, so the size is the same, and the 68 MB embedding costs nothing to measure (checksumming
    # it was most of the first page's size measurement). torch refuses quantized tensors there, and
    # packed weights hide theirs, so any other state is written in full.
    skipping = torch.serialization.skip_data() if _plain_tensors(state) else contextlib.nullcontext()
    with skipping:
        torch.save(state, counter)
    return counter.written


def module_sizes(model: nn.Module) -> dict[str, int]:
    """Serialized bytes of each part: embedding, lstm, decoder."""
    return {part.name: state_dict_bytes(getattr(model, part.attr)) for part in PARTS}


def _weights_of(module: nn.Module) -> list[torch.Tensor]:
    """The weight and bias tensors a part holds, float or quantized (same count either way)."""
    packed = packed_lstm_weights(module)
    if packed is not None:
        return [t for kind in ("weight", "bias") for t in packed[kind].values() if t is not None]
    quantized = [m for m in module.modules() if callable(getattr(m, "weight", None))]
    if quantized:  # quantized Linear / Embedding / EmbeddingBag: weight() and bias() unpack them
        return [t for m in quantized for t in (m.weight(), getattr(m, "bias", lambda: None)())
                if isinstance(t, torch.Tensor)]
    return list(module.parameters())


def weights_per_part(model: nn.Module) -> dict[str, int]:
    """Weights (and biases) in each part: embedding, lstm, decoder. Quantizing changes how they are
    stored, never how many there are."""
    return {part.name: sum(t.numel() for t in _weights_of(getattr(model, part.attr))) for part in PARTS}


def size_by_part(models: dict[str, nn.Module]) -> pd.DataFrame:
    """Serialized size of each part of each model. Columns: model, part, bytes, mb, share (of that model)."""
    rows = []
    for label, model in models.items():
        sizes = module_sizes(model)
        total = sum(sizes.values())
        for part in PART_NAMES:
            rows.append({"model": label, "part": part, "bytes": sizes[part], "mb": sizes[part] / MB,
                         "share": sizes[part] / total})
    return pd.DataFrame(rows, columns=["model", "part", "bytes", "mb", "share"])


def part_table(sizes: pd.DataFrame, weights: dict[str, int], spec: QuantSpec) -> pd.DataFrame:
    """The Model tab's table: per part (and in total) its weights, MB in the float and the quantized
    model (from ``size_by_part`` with models labelled float and quantized), and how ``spec`` stores it."""
    mb = sizes.pivot(index="part", columns="model", values="mb").loc[list(PART_NAMES)]
    stored = storage(spec)
    table = pd.DataFrame({"weights": [weights[p] for p in PART_NAMES], "float_mb": mb["float"].to_numpy(),
                          "quantized_mb": mb["quantized"].to_numpy(),
                          "quantized_storage": [stored[p] for p in PART_NAMES]}, index=list(PART_NAMES))
    table.index.name = "part"
    table.loc["total"] = [sum(weights.values()), table["float_mb"].sum(), table["quantized_mb"].sum(), ""]
    return table
