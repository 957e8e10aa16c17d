"""How low can the bits go: weights rounded to an N-bit grid (2-8 bits), the model run in float.

PyTorch has no dynamic int4/int3/int2 LSTM kernel, so fewer bits are *simulated*: each LSTM and
Linear weight (optionally the embedding) is rounded to N-bit symmetric levels, with one scale per
tensor or one per row, and put back as float. The rule is torch's own int8 weight rule with fewer
levels (codes -2^(N-1) .. 2^(N-1)-1, the largest |weight| at (2^N - 1)/2 steps), so at 8 bits the
simulated weights are exactly the real int8 variant's; what is left between the two losses is
the real variant's run-time activation rounding.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .errors import WlmError
from .evaluate import evaluate
from .model import PARTS
from .quantize import preset, quantize
from .threads import num_threads
from .torch_internals import with_children

MIN_BITS, MAX_BITS = 2, 8
SWEEP_BITS = tuple(range(MAX_BITS, MIN_BITS - 1, -1))  # 8, 7, ..., 2
SCHEMES = ("per-tensor", "per-row")
# A sweep's test tokens unless told: its 16 evaluations stay within a minute on one thread (bench/bench_low_bits.py).
DEFAULT_BITS_TOKENS = 2000
CLIFF_NATS = 0.05  # a loss rise a class notices

Progress = Callable[[str, int, int], None]


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise WlmError(f"bits must be a whole number from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    return int(bits)


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise WlmError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme


def levels(bits: int) -> tuple[int, int]:
    """The smallest and largest integer code at ``bits`` bits."""
    check_bits(bits)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def scales_for(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """One scale (shape (1,)) or one per row: the largest |weight| spans half of the 2^N - 1 steps."""
    qmin, qmax = levels(bits)
    amax = weight.abs().amax(dim=1) if per_channel else weight.abs().max().reshape(1)
    return torch.clamp(amax.float() / ((qmax - qmin) / 2), min=torch.finfo(torch.float32).eps)


def weight_codes(weight: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (2-D) as N-bit integer codes (int8) and its scales (shape (1,) or one per row)."""
    qmin, qmax = levels(bits)
    scales = scales_for(weight, bits, per_channel)
    # Multiply by the float32 inverse, as torch's int8 kernels do, so 8 bits gives their exact codes.
    codes = torch.clamp(torch.round(weight.float() * (1.0 / scales).reshape(-1, 1)), qmin, qmax)
    return codes.to(torch.int8), scales


def round_weight(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """``weight`` (2-D) rounded to its N-bit grid, as float."""
    codes, scales = weight_codes(weight, bits, per_channel)
    return codes.float() * scales.reshape(-1, 1)


def rounded_names(model: nn.Module, embedding: bool = False) -> list[str]:
    """The weights a simulated model rounds: every LSTM weight matrix, the decoder, optionally the embedding."""
    names = [name for name, _ in model.rnn.named_parameters() if name.startswith("weight")]
    return (["encoder.weight"] if embedding else []) + [f"rnn.{n}" for n in names] + ["decoder.weight"]


@torch.no_grad()
def simulate(model: nn.Module, bits: int, scheme: str = "per-tensor", embedding: bool = False) -> nn.Module:
    """A float model like ``model`` whose weights are rounded to ``bits`` bits; ``model`` is not changed.

    A plain ``nn.Module`` (works with ``evaluate`` and ``generate``). The parts it does not round
    (the embedding unless asked) are the float model's own modules, shared and only read.
    """
    bits, per_channel = check_bits(bits), check_scheme(scheme) == "per-row"
    rounded = {part.attr for part in PARTS if part.name != "embedding" or embedding}
    children = dict(model.named_children())
    for attr in rounded:
        module = copy.deepcopy(children[attr])
        for name, parameter in module.named_parameters():
            if name.startswith("weight"):
                parameter.copy_(round_weight(parameter, bits, per_channel))
        children[attr] = module
    simulated = with_children(model, children)
    simulated.training = False  # not .eval(): that would also switch the shared float modules
    return simulated


def distinct_values(weight: torch.Tensor, per_channel: bool) -> int:
    """How many different values the tensor holds (the most over its rows when ``per_channel``)."""
    if per_channel:
        return max(int(torch.unique(row).numel()) for row in weight)
    return int(torch.unique(weight).numel())


# --- the sweep --------------------------------------------------------------------------------

def _labelled(progress: Progress | None, label: str):
    return None if progress is None else (lambda done, total: progress(label, done, total))


def estimate_sweep_seconds(model: nn.Module, data: torch.Tensor, *, bits=SWEEP_BITS, schemes=SCHEMES,
                           max_tokens: int | None = DEFAULT_BITS_TOKENS, embedding: bool = False,
                           threads: int | None = 1, probe_tokens: int = 150) -> float:
    """How long ``sweep`` will take, from a short probe: one simulated model built and run on
    ``probe_tokens`` tokens, the real int8 variant likewise, scaled up to the sweep."""
    tokens = min(len(data), max_tokens or len(data))
    probe = min(probe_tokens, tokens)
    with num_threads(threads):
        start = time.perf_counter()
        simulated = simulate(model, MAX_BITS, SCHEMES[0], embedding)
        built = time.perf_counter()
        evaluate(simulated, data, max_tokens=probe)
        ran = time.perf_counter()
        real = quantize(model, preset("tutorial"))
        real_built = time.perf_counter()
        evaluate(real, data, max_tokens=probe)
        real_ran = time.perf_counter()
    per_token = (ran - built) / probe  # the float model runs at the simulated model's speed
    points = len(bits) * len(schemes)
    return (points * (built - start) + (points + 1) * per_token * tokens
            + (real_built - ran) + (real_ran - real_built) / probe * tokens)


def sweep(model: nn.Module, data: torch.Tensor, *, bits=SWEEP_BITS, schemes=SCHEMES,
          max_tokens: int | None = DEFAULT_BITS_TOKENS, embedding: bool = False, threads: int | None = 1,
          progress: Progress | None = None, cache: dict | None = None) -> pd.DataFrame:
    """Loss at each bit width and scheme, with the float model's and the real int8 variant's for reference.

    Columns: scheme ('float', 'real int8', 'per-tensor', 'per-row'), bits (32 for float), loss,
    perplexity, delta_loss (against float), tokens, seconds. ``progress(label, done, tokens)``
    follows each evaluation. ``cache`` (a dict the caller keeps for one model and data) saves
    results across calls, keyed by (scheme, bits, tokens, embedding).
    """
    bits = [check_bits(b) for b in bits]
    schemes = [check_scheme(s) for s in schemes]
    cache = {} if cache is None else cache
    points = [("float", 32), ("real int8", 8)] + [(s, b) for s in schemes for b in bits]
    rows = []
    with num_threads(threads):
        for scheme, width in points:
            key = (scheme, width, max_tokens, embedding)
            if key not in cache:
                label = scheme if width == 32 or scheme == "real int8" else f"{scheme} {width}-bit"
                if scheme == "float":
                    candidate = model
                elif scheme == "real int8":
                    candidate = quantize(model, preset("tutorial"))
                else:
                    candidate = simulate(model, width, scheme, embedding)
                cache[key] = evaluate(candidate, data, max_tokens=max_tokens, progress=_labelled(progress, label))
            result = cache[key]
            rows.append({"scheme": scheme, "bits": width, "loss": result.loss, "perplexity": result.perplexity,
                         "tokens": result.tokens, "seconds": result.seconds})
    table = pd.DataFrame(rows)
    table.insert(4, "delta_loss", table["loss"] - table.loc[table["scheme"] == "float", "loss"].iloc[0])
    return table


def cliff(table: pd.DataFrame, threshold: float = CLIFF_NATS) -> dict[str, int | None]:
    """Per scheme, the widest bit width (going down from 8) whose loss rises more than ``threshold``
    nats above float; None when no width in the table does."""
    found: dict[str, int | None] = {}
    for scheme in [s for s in SCHEMES if s in set(table["scheme"])]:
        rows = table[table["scheme"] == scheme].sort_values("bits", ascending=False)
        over = rows[rows["delta_loss"] > threshold]
        found[scheme] = int(over["bits"].iloc[0]) if len(over) else None
    return found


def sweep_takeaway(table: pd.DataFrame, threshold: float = CLIFF_NATS) -> str:
    """One line: where each scheme's loss first rises by more than ``threshold`` nats, and the 8-bit check."""
    parts = []
    for scheme, width in cliff(table, threshold).items():
        lowest = int(table.loc[table["scheme"] == scheme, "bits"].min())
        parts.append(f"{scheme}: loss first rises by more than {threshold} nats at {width} bits" if width
                     else f"{scheme}: within {threshold} nats down to {lowest} bits")
    text = "; ".join(parts) + "."
    real = table[table["scheme"] == "real int8"]
    sim8 = table[(table["scheme"] == "per-tensor") & (table["bits"] == 8)]
    if len(real) and len(sim8):
        text += (f" Simulated 8-bit per-tensor is {abs(sim8['loss'].iloc[0] - real['loss'].iloc[0]):.4f} nats from "
                 "the real int8 variant (which also rounds activations).")
    return text


# --- the weight histogram with the N-bit grid ---------------------------------------------------

@dataclass(frozen=True)
class BitsHistogram:
    name: str
    bits: int
    scheme: str
    values: np.ndarray  # float weights (a sample of at most ``max_values``)
    errors: np.ndarray  # rounded minus float, same positions
    grid: np.ndarray  # the N-bit levels (per-tensor; for per-row, the levels of the row with the largest scale)
    scale: float  # the grid step drawn
    distinct: int  # values the rounded tensor takes (per row: the most any row takes)


def weight_names(model: nn.Module) -> list[str]:
    return rounded_names(model, embedding=True)


@torch.no_grad()
def bits_histogram(model: nn.Module, name: str, bits: int, scheme: str = "per-tensor", *, max_values: int = 50_000,
                   seed: int = 0) -> BitsHistogram:
    """Data for a histogram of one float weight with its N-bit grid, e.g. ``name='rnn.weight_hh_l0'``."""
    bits, per_channel = check_bits(bits), check_scheme(scheme) == "per-row"
    state = dict(model.named_parameters())
    if name not in weight_names(model):
        raise WlmError(f"unknown weight {name!r}; choose one of {', '.join(weight_names(model))}")
    weight = state[name].detach().float()
    rounded = round_weight(weight, bits, per_channel)
    scales = scales_for(weight, bits, per_channel)
    qmin, qmax = levels(bits)
    scale = float(scales.max())
    grid = np.arange(qmin, qmax + 1) * scale
    distinct = distinct_values(rounded, per_channel)
    w, r = weight.reshape(-1), rounded.reshape(-1)
    if w.numel() > max_values:
        index = torch.randperm(w.numel(), generator=torch.Generator().manual_seed(seed))[:max_values]
        w, r = w[index], r[index]
    return BitsHistogram(name, bits, scheme, w.numpy(), (r - w).numpy(), grid, scale, distinct)
