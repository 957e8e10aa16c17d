"""How low can the bits go: weights rounded to an N-bit grid (2-8 bits), the model run in float.

PyTorch has no dynamic int4/int3/int2 LSTM kernel, so fewer bits are *simulated*: each LSTM and
Linear weight (optionally the embedding) is rounded to N-bit levels and put back as float.

A scheme says how many weights share one scale: the whole tensor, a row (one output), or a group of G
consecutive input weights of a row. The symmetric rule is torch's own int8 weight rule with fewer
levels (codes -2^(N-1) .. 2^(N-1)-1, the block's largest |weight| at (2^N - 1)/2 steps), so at 8 bits
per tensor the simulated weights are exactly the real int8 variant's; what is left between the two
losses is the real variant's run-time activation rounding. The asymmetric schemes (``-asym``) give
each block a zero point as well, so its grid spans the block's own [min, max] (zero kept exact, as torch's
affine rule keeps it) rather than ±max|w|.

Stored sizes count what a file would hold: N bits a weight, a float16 scale per block, and an N-bit zero point
per block when asymmetric, so 4 bits with a scale per 64 weights is 4.25 bits a weight.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .errors import WlmError
from .evaluate import evaluate
from .quantize import preset, quantize
from .sizes import MB
from .threads import num_threads
from .torch_internals import with_children

MIN_BITS, MAX_BITS = 2, 8
SWEEP_BITS = tuple(range(MAX_BITS, MIN_BITS - 1, -1))  # 8, 7, ..., 2
SCHEMES = ("per-tensor", "per-row", "per-group", "per-row-asym", "per-group-asym")
SWEEP_SCHEMES = ("per-tensor", "per-row", "per-group")  # what a sweep compares unless told
GROUP_SIZES = (32, 64, 128)  # the group sizes the app offers; any from MIN_GROUP up is accepted
DEFAULT_GROUP_SIZE = 64
MIN_GROUP = 2
SCALE_BITS = 16  # a block's scale, stored as float16
FLOAT_BITS = 32
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


def check_group_size(group_size: int) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < MIN_GROUP:
        raise WlmError(f"the group size must be a whole number of weights, at least {MIN_GROUP} "
                       f"(e.g. {', '.join(map(str, GROUP_SIZES))}), got {group_size!r}")
    return int(group_size)


def is_asymmetric(scheme: str) -> bool:
    return check_scheme(scheme).endswith("-asym")


def scheme_label(scheme: str, group_size: int = DEFAULT_GROUP_SIZE) -> str:
    """What a table or chart calls the scheme: a group names its size and a zero point says so, e.g.
    ``per-group 64 asym``."""
    check_scheme(scheme)
    name = scheme.removesuffix("-asym")
    if name == "per-group":
        name = f"per-group {group_size}"
    return f"{name} asym" if scheme.endswith("-asym") else name


def levels(bits: int) -> tuple[int, int]:
    """The smallest and largest integer code at ``bits`` bits."""
    check_bits(bits)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def block_width(columns: int, scheme: str, group_size: int = DEFAULT_GROUP_SIZE) -> int:
    """How many consecutive weights of a row share a scale (the row's length unless per group)."""
    return min(check_group_size(group_size), columns) if "per-group" in check_scheme(scheme) else columns


@dataclass(frozen=True)
class Grid:
    """A 2-D weight on its N-bit grid: integer codes, and per block a scale and a zero point."""

    codes: torch.Tensor  # int8, the weight's shape
    scales: torch.Tensor  # float32, (1, 1) per tensor, (rows, 1) per row, (rows, groups) per group
    zero_points: torch.Tensor  # float32 holding whole codes, the scales' shape (zeros when symmetric)
    width: int  # weights of a row per block
    columns: int  # weights of a row

    def spread(self, per_block: torch.Tensor) -> torch.Tensor:
        """A per-block tensor laid over the weight's positions (broadcastable to its shape)."""
        if per_block.shape[1] == 1:
            return per_block
        return per_block.repeat_interleave(self.width, dim=1)[:, :self.columns]

    def values(self) -> torch.Tensor:
        """The rounded weight, as float."""
        # In place on one fresh float tensor: a decoder's 8.5 M weights make every temporary 34 MB.
        return self.codes.float().sub_(self.spread(self.zero_points)).mul_(self.spread(self.scales))


def _blocks(weight: torch.Tensor, scheme: str, width: int) -> torch.Tensor:
    """``weight`` as (rows or 1, blocks, weights per block); a short last group is padded with zeros, which
    change neither a block's largest |weight| nor a range that always holds zero."""
    if scheme == "per-tensor":
        return weight.reshape(1, 1, -1)
    rows, columns = weight.shape
    blocks = math.ceil(columns / width)
    if blocks * width != columns:
        weight = nn.functional.pad(weight, (0, blocks * width - columns))
    return weight.reshape(rows, blocks, width)


def weight_codes(weight: torch.Tensor, bits: int, scheme: str = "per-tensor",
                 group_size: int = DEFAULT_GROUP_SIZE, tensor_range: tuple[float, float] | None = None) -> Grid:
    """``weight`` (2-D) on its ``bits``-bit grid under ``scheme``.

    ``tensor_range`` (the whole tensor's min and max) lets a per-tensor grid be computed for a few rows of a
    large tensor, as the whole tensor would round them."""
    qmin, qmax = levels(bits)
    check_scheme(scheme)
    weight = weight.float()
    width = block_width(weight.shape[1], scheme, group_size)
    if scheme.startswith("per-tensor") and tensor_range is not None:
        low, high = (torch.tensor([[v]], dtype=torch.float32) for v in tensor_range)
    else:
        blocks = _blocks(weight, scheme, width)
        low, high = blocks.amin(dim=-1), blocks.amax(dim=-1)
    eps = torch.finfo(torch.float32).eps
    if scheme.endswith("-asym"):
        low, high = low.clamp(max=0), high.clamp(min=0)  # zero stays on the grid, as in torch's affine rule
        scales = torch.clamp((high - low) / (qmax - qmin), min=eps)
        zero_points = torch.clamp(torch.round(qmin - low / scales), qmin, qmax)
    else:
        scales = torch.clamp(torch.maximum(high, -low) / ((qmax - qmin) / 2), min=eps)
        zero_points = torch.zeros_like(scales)
    grid = Grid(torch.empty(0), scales, zero_points, width, weight.shape[1])
    # Multiply by the float32 inverse, as torch's int8 kernels do, so 8 bits gives their exact codes.
    codes = (weight * grid.spread(1.0 / scales)).round_().add_(grid.spread(zero_points)).clamp_(qmin, qmax)
    return Grid(codes.to(torch.int8), scales, zero_points, width, weight.shape[1])


def round_weight(weight: torch.Tensor, bits: int, scheme: str = "per-tensor",
                 group_size: int = DEFAULT_GROUP_SIZE) -> torch.Tensor:
    """``weight`` (2-D) rounded to its N-bit grid, as float."""
    return weight_codes(weight, bits, scheme, group_size).values()


def bits_per_weight(shape: tuple[int, int], bits: int, scheme: str = "per-tensor",
                    group_size: int = DEFAULT_GROUP_SIZE) -> float:
    """Stored bits per weight of a ``shape`` tensor: the code, plus each block's float16 scale (and N-bit zero
    point when asymmetric) shared over the block's weights."""
    rows, columns = shape
    blocks = 1 if scheme == "per-tensor" else rows * math.ceil(columns / block_width(columns, scheme, group_size))
    per_block = SCALE_BITS + (check_bits(bits) if is_asymmetric(scheme) else 0)
    return bits + per_block * blocks / (rows * columns)


def rounded_names(model: nn.Module, embedding: bool = False) -> list[str]:
    """The weights a simulated model rounds: every LSTM weight matrix, the decoder, optionally the embedding."""
    names = [name for name, _ in model.rnn.named_parameters() if name.startswith("weight")]
    return (["encoder.weight"] if embedding else []) + [f"rnn.{n}" for n in names] + ["decoder.weight"]


@dataclass(frozen=True)
class Rounding:
    """How one weight is rounded: ``bits`` under ``scheme`` (``group_size`` for the per-group schemes)."""

    bits: int
    scheme: str = "per-tensor"
    group_size: int = DEFAULT_GROUP_SIZE

    def __post_init__(self):
        check_bits(self.bits), check_scheme(self.scheme), check_group_size(self.group_size)

    @property
    def label(self) -> str:
        return f"{self.bits}-bit {scheme_label(self.scheme, self.group_size)}"


@torch.no_grad()
def simulate_weights(model: nn.Module, roundings: dict[str, Rounding]) -> nn.Module:
    """A float model like ``model`` whose weights named in ``roundings`` (state_dict names, e.g.
    ``rnn.weight_ih_l2``) are rounded as each says; ``model`` is not changed.

    A plain ``nn.Module`` (works with ``evaluate`` and ``generate``). The parts it does not touch are the float
    model's own modules, shared and only read."""
    children = dict(model.named_children())
    state = model.state_dict()
    unknown = sorted(set(roundings) - set(rounded_names(model, embedding=True)))
    if unknown:
        raise WlmError(f"cannot round {', '.join(unknown)}; choose from {', '.join(rounded_names(model, True))}")
    for attr in {name.split(".", 1)[0] for name in roundings}:
        module = copy.deepcopy(children[attr])
        for name, parameter in module.named_parameters():
            rounding = roundings.get(f"{attr}.{name}")
            if rounding is not None:
                parameter.copy_(round_weight(state[f"{attr}.{name}"], rounding.bits, rounding.scheme,
                                             rounding.group_size))
        children[attr] = module
    simulated = with_children(model, children)
    simulated.training = False  # not .eval(): that would also switch the shared float modules
    return simulated


def simulate(model: nn.Module, bits: int, scheme: str = "per-tensor", embedding: bool = False,
             group_size: int = DEFAULT_GROUP_SIZE) -> nn.Module:
    """``model`` with every LSTM and decoder weight (and the embedding, if asked) rounded to ``bits`` bits."""
    rounding = Rounding(bits, scheme, group_size)
    return simulate_weights(model, {name: rounding for name in rounded_names(model, embedding)})


def stored_mb(tensors: dict[str, torch.Tensor], roundings: dict[str, Rounding]) -> float:
    """What ``tensors`` (a float state_dict, or part of one) take stored (MB) with ``roundings`` applied: rounded
    weights at their bits per weight, every other tensor as float32."""
    bits = 0.0
    for name, parameter in tensors.items():
        rounding = roundings.get(name)
        bits += parameter.numel() * (FLOAT_BITS if rounding is None else
                                     bits_per_weight(tuple(parameter.shape), rounding.bits, rounding.scheme,
                                                     rounding.group_size))
    return bits / 8 / MB


def distinct_values(weight: torch.Tensor, scheme: str = "per-tensor", group_size: int = DEFAULT_GROUP_SIZE) -> int:
    """How many different values a rounded tensor holds, the most over its blocks (rows or groups)."""
    blocks = _blocks(weight.float(), check_scheme(scheme), block_width(weight.shape[1], scheme, group_size))
    ordered = blocks.sort(dim=-1).values
    return int((1 + (ordered.diff(dim=-1) != 0).sum(dim=-1)).max())


# --- the sweep --------------------------------------------------------------------------------

def _labelled(progress: Progress | None, label: str):
    return None if progress is None else (lambda done, total: progress(label, done, total))


def estimate_sweep_seconds(model: nn.Module, data: torch.Tensor, *, bits=SWEEP_BITS, schemes=SWEEP_SCHEMES,
                           max_tokens: int | None = DEFAULT_BITS_TOKENS, embedding: bool = False,
                           threads: int | None = 1, probe_tokens: int = 150,
                           group_size: int = DEFAULT_GROUP_SIZE) -> float:
    """How long ``sweep`` will take, from a short probe: one simulated model built and run on
    ``probe_tokens`` tokens, the real int8 variant likewise, scaled up to the sweep."""
    tokens = min(len(data), max_tokens or len(data))
    probe = min(probe_tokens, tokens)
    with num_threads(threads):
        start = time.perf_counter()
        simulated = simulate(model, MAX_BITS, schemes[0] if schemes else SCHEMES[0], embedding, group_size)
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


def sweep(model: nn.Module, data: torch.Tensor, *, bits=SWEEP_BITS, schemes=SWEEP_SCHEMES,
          max_tokens: int | None = DEFAULT_BITS_TOKENS, embedding: bool = False, threads: int | None = 1,
          progress: Progress | None = None, cache: dict | None = None,
          group_size: int = DEFAULT_GROUP_SIZE) -> pd.DataFrame:
    """Loss at each bit width and scheme, with the float model's and the real int8 variant's for reference.

    Columns: scheme ('float', 'real int8', or one of ``SCHEMES``), group_size (per-group schemes, else 0), bits
    (32 for float), loss, perplexity, delta_loss (against float), bits_per_weight (of the rounded weights, scales
    counted), size_mb (the whole model stored so), tokens, seconds. ``progress(label, done, tokens)`` follows each
    evaluation. ``cache`` (a dict the caller keeps for one model and data) saves results across calls, keyed by
    (scheme, bits, tokens, embedding[, group size]).
    """
    bits = [check_bits(b) for b in bits]
    schemes = [check_scheme(s) for s in schemes]
    group_size = check_group_size(group_size)
    cache = {} if cache is None else cache
    points = [("float", 32), ("real int8", 8)] + [(s, b) for s in schemes for b in bits]
    names = rounded_names(model, embedding)
    state = model.state_dict()
    real_mb = stored_mb(state, {name: Rounding(8) for name in rounded_names(model)})  # torch's payload: per tensor
    rows = []
    with num_threads(threads):
        for scheme, width in points:
            grouped = "per-group" in scheme
            key = (scheme, width, max_tokens, embedding) + ((group_size,) if grouped else ())
            if key not in cache:
                if scheme == "float":
                    candidate, label = model, scheme
                elif scheme == "real int8":
                    candidate, label = quantize(model, preset("tutorial")), scheme
                else:
                    candidate = simulate(model, width, scheme, embedding, group_size)
                    label = f"{scheme_label(scheme, group_size)} {width}-bit"
                cache[key] = evaluate(candidate, data, max_tokens=max_tokens, progress=_labelled(progress, label))
            result = cache[key]
            if scheme == "float":
                per_weight, size = FLOAT_BITS, stored_mb(state, {})
            elif scheme == "real int8":
                per_weight, size = 8.0, real_mb
            else:
                rounding = Rounding(width, scheme, group_size)
                roundings = {name: rounding for name in names}
                size = stored_mb(state, roundings)
                rounded = sum(state[n].numel() for n in names)
                per_weight = sum(state[n].numel() * bits_per_weight(tuple(state[n].shape), width, scheme, group_size)
                                 for n in names) / rounded
            rows.append({"scheme": scheme, "group_size": group_size if grouped else 0, "bits": width,
                         "loss": result.loss, "perplexity": result.perplexity, "bits_per_weight": per_weight,
                         "size_mb": size, "tokens": result.tokens, "seconds": result.seconds})
    table = pd.DataFrame(rows)
    table.insert(5, "delta_loss", table["loss"] - table.loc[table["scheme"] == "float", "loss"].iloc[0])
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


def _table_label(table: pd.DataFrame, scheme: str) -> str:
    groups = table.loc[table["scheme"] == scheme, "group_size"] if "group_size" in table else []
    return scheme_label(scheme, int(groups.iloc[0]) if len(groups) and groups.iloc[0] else DEFAULT_GROUP_SIZE)


def sweep_takeaway(table: pd.DataFrame, threshold: float = CLIFF_NATS) -> str:
    """One line: at which width each scheme's loss first rises by more than ``threshold`` nats (schemes that
    share a width named together), and the 8-bit check."""
    at: dict[int | None, list[str]] = {}
    for scheme, width in cliff(table, threshold).items():
        at.setdefault(width, []).append(_table_label(table, scheme))
    parts = [f"{width} bits ({', '.join(names)})" for width, names in sorted(
        ((w, n) for w, n in at.items() if w is not None), key=lambda item: -item[0])]
    text = f"The loss first rises by more than {threshold} nats at {'; at '.join(parts)}" if parts else ""
    if None in at:
        lowest = int(table.loc[table["scheme"].isin(SCHEMES), "bits"].min())
        if text:
            text += (f"; {', '.join(at[None])} stay{'s' if len(at[None]) == 1 else ''} within {threshold} nats "
                     f"down to {lowest} bits")
        else:
            text = f"Every scheme stays within {threshold} nats down to {lowest} bits"
    text += "."
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
    grid: np.ndarray  # the N-bit levels of the block (tensor, row or group) with the largest scale
    scale: float  # the grid step drawn
    distinct: int  # values the rounded tensor takes (per row or group: the most any block takes)


def weight_names(model: nn.Module) -> list[str]:
    return rounded_names(model, embedding=True)


@torch.no_grad()
def bits_histogram(model: nn.Module, name: str, bits: int, scheme: str = "per-tensor", *, max_values: int = 50_000,
                   seed: int = 0, group_size: int = DEFAULT_GROUP_SIZE) -> BitsHistogram:
    """Data for a histogram of one float weight with its N-bit grid, e.g. ``name='rnn.weight_hh_l0'``."""
    bits, scheme = check_bits(bits), check_scheme(scheme)
    state = dict(model.named_parameters())
    if name not in weight_names(model):
        raise WlmError(f"unknown weight {name!r}; choose one of {', '.join(weight_names(model))}")
    weight = state[name].detach().float()
    grid = weight_codes(weight, bits, scheme, group_size)
    rounded = grid.values()
    widest = int(grid.scales.argmax())
    scale, zero = float(grid.scales.reshape(-1)[widest]), float(grid.zero_points.reshape(-1)[widest])
    qmin, qmax = levels(bits)
    levels_drawn = (np.arange(qmin, qmax + 1) - zero) * scale
    distinct = distinct_values(rounded, scheme, group_size)
    w, r = weight.reshape(-1), rounded.reshape(-1)
    if w.numel() > max_values:
        index = torch.randperm(w.numel(), generator=torch.Generator().manual_seed(seed))[:max_values]
        w, r = w[index], r[index]
    return BitsHistogram(name, bits, scheme, w.numpy(), (r - w).numpy(), levels_drawn, scale, distinct)
