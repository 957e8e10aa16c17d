"""How closely a quantized model follows its float original.

Output side (after llama.cpp's ``--kl-divergence``): per-position KL divergence of the
quantized next-word distribution from the float one, top-1 agreement and the loss change.
Weight side (after PyTorch's Numeric Suite): SQNR = 20·log10(‖w‖ / ‖w − ŵ‖) per weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .errors import WlmError
from .evaluate import BPTT, chunks, limit_tokens
from .model import PART_BY_ATTR
from .torch_internals import packed_lstm_weights

GATES = ("i", "f", "g", "o")  # PyTorch's order of the four blocks in each LSTM weight


@dataclass(frozen=True)
class FidelityResult:
    tokens: int
    kl_mean: float
    kl_median: float
    kl_p99: float
    kl_max: float
    top1_agreement: float  # share of positions where both models rank the same next word first
    loss_float: float
    loss_quant: float
    delta_loss: float
    kl: np.ndarray  # per-position KL(float ‖ quantized), nats
    note: str = ""

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in ("tokens", "kl_mean", "kl_median", "kl_p99", "kl_max",
                                              "top1_agreement", "loss_float", "loss_quant", "delta_loss")}


@torch.no_grad()
def output_fidelity(float_model: nn.Module, quantized: nn.Module, data: torch.Tensor, *,
                    max_tokens: int | None = None, bptt: int = BPTT,
                    progress: Callable[[int, int], None] | None = None) -> FidelityResult:
    """Run both models over the same tokens (batch 1, hidden carried) and compare their predictions."""
    data, note = limit_tokens(data, max_tokens)
    kls, agree, nll_f, nll_q, steps = [], 0, 0.0, 0.0, 0
    for targets, (lf, lq) in chunks([float_model, quantized], data, bptt=bptt, progress=progress):
        logp_f = torch.log_softmax(lf.view(-1, lf.size(-1)).double(), -1)
        logp_q = torch.log_softmax(lq.view(-1, lq.size(-1)).double(), -1)
        kls.append((logp_f.exp() * (logp_f - logp_q)).sum(-1).clamp_min(0).float())
        agree += int((logp_f.argmax(-1) == logp_q.argmax(-1)).sum())
        nll_f -= float(logp_f.gather(1, targets.view(-1, 1)).sum())
        nll_q -= float(logp_q.gather(1, targets.view(-1, 1)).sum())
        steps += len(targets)
    kl = torch.cat(kls).numpy()
    loss_f, loss_q = nll_f / steps, nll_q / steps
    return FidelityResult(
        tokens=steps, kl_mean=float(kl.mean()), kl_median=float(np.median(kl)),
        kl_p99=float(np.percentile(kl, 99)), kl_max=float(kl.max()), top1_agreement=agree / steps,
        loss_float=loss_f, loss_quant=loss_q, delta_loss=loss_q - loss_f, kl=kl, note=note,
    )


def _as_float(weight: torch.Tensor) -> torch.Tensor:
    return weight.dequantize() if weight.is_quantized else weight.float()


def quantized_weights(quantized: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a quantized model actually computes with (quantized tensors, or fp16 values),
    keyed by the float model's state_dict names. Parts left in float are not listed."""
    out: dict[str, torch.Tensor] = {}
    encoder = getattr(quantized.encoder, "bag", quantized.encoder)
    if callable(getattr(encoder, "weight", None)):
        out["encoder.weight"] = encoder.weight()
    packed = packed_lstm_weights(quantized.rnn)
    if packed is not None:
        for name, weight in packed["weight"].items():
            out[f"rnn.{name}"] = weight
    if callable(getattr(quantized.decoder, "weight", None)):
        out["decoder.weight"] = quantized.decoder.weight()
    return out


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    noise = torch.linalg.vector_norm((reference - approx).double())
    signal = torch.linalg.vector_norm(reference.double())
    return math.inf if noise == 0 else float(20 * torch.log10(signal / noise))


def weight_sqnr(float_model: nn.Module, quantized: nn.Module) -> pd.DataFrame:
    """SQNR (dB) of every quantized weight; LSTM weights also per gate (i, f, g, o).

    Columns: part (embedding | lstm | decoder), weight, layer (LSTM layer or None), gate ('all' or i/f/g/o), sqnr_db.
    """
    reference = float_model.state_dict()
    rows = []
    for name, qweight in quantized_weights(quantized).items():
        w, wq = reference[name].float(), _as_float(qweight)
        part = PART_BY_ATTR[name.split(".")[0]].name
        layer = int(name.rsplit("_l", 1)[1]) if part == "lstm" else None
        short = name.split(".", 1)[1]
        rows.append({"part": part, "weight": short, "layer": layer, "gate": "all", "sqnr_db": sqnr_db(w, wq)})
        if part == "lstm":
            for gate, (a, b) in zip(GATES, zip(w.chunk(4), wq.chunk(4))):
                rows.append({"part": part, "weight": short, "layer": layer, "gate": gate, "sqnr_db": sqnr_db(a, b)})
    return pd.DataFrame(rows, columns=["part", "weight", "layer", "gate", "sqnr_db"])


HISTOGRAM_BINS = 80


def histogram_bins(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """Equal-width bins over ``values``: columns start, end and weights (how many values fall in each).

    Counted here rather than in the browser: a decoder's millions of weights would not fit in a chart."""
    counts, edges = np.histogram(np.asarray(values).reshape(-1), bins=bins)
    edges = edges.astype(float)  # float32 weights give float32 edges; charts and tables want plain floats
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "weights": counts})


@dataclass(frozen=True)
class WeightHistogram:
    name: str
    bins: pd.DataFrame  # every float weight counted, from ``histogram_bins``
    max_error: float  # the largest |quantized - float| over the whole tensor
    grid: np.ndarray  # representable levels inside the weights' range (empty when not one per-tensor grid)
    scale: float | None


def weight_histogram(float_model: nn.Module, quantized: nn.Module, name: str) -> WeightHistogram:
    """Data for a histogram of one weight with its quantization grid, e.g. ``name='rnn.weight_hh_l0'``."""
    available = quantized_weights(quantized)
    if name not in available:
        raise WlmError(f"weight {name!r} is not quantized in this model; "
                       f"choose one of {', '.join(available) or 'none'}")
    qweight = available[name]
    w = float_model.state_dict()[name].float().reshape(-1)
    wq = _as_float(qweight).reshape(-1)
    grid, scale = np.array([]), None
    if qweight.is_quantized and qweight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scale, zero = float(qweight.q_scale()), int(qweight.q_zero_point())
        info = torch.iinfo(torch.int8) if qweight.dtype == torch.qint8 else torch.iinfo(torch.uint8)
        levels = (np.arange(info.min, info.max + 1) - zero) * scale
        lo, hi = float(w.min()), float(w.max())
        grid = levels[(levels >= lo - scale) & (levels <= hi + scale)]
    return WeightHistogram(name, histogram_bins(w.numpy()), float((wq - w).abs().max()), grid, scale)
