"""Which part costs what: each part of the model quantized alone while the rest stays float, and a
mixed-precision pick of bits per part under a size budget.

The parts are the embedding, each LSTM layer (its input and recurrent weights together) and the decoder.
"Real int8" quantizes the part with torch's own dynamic kernels: to quantize one LSTM layer the stacked
``nn.LSTM`` is split into one single-layer ``nn.LSTM`` per layer holding the same weights (``SplitLSTM``). The
other cells round the part's weights to N bits (``wlm.low_bits``) and run in float.

A map runs a part's candidates side by side: the float stages before the part run once, every candidate
takes the same input, and the float stages after it run on all candidates at once as one batch; the whole
token stream goes through in segments with each candidate's hidden state carried, so memory follows a
segment, not the split. The float model is candidate 0 of every pass, and each cell's loss change and KL
divergence are against it, on the same positions.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.ao import quantization as tq

from .errors import WlmError
from .evaluate import BPTT, evaluate
from .low_bits import (
    DEFAULT_GROUP_SIZE,
    FLOAT_BITS,
    SWEEP_BITS,
    SWEEP_SCHEMES,
    Rounding,
    check_bits,
    check_group_size,
    check_scheme,
    round_weight,
    scheme_label,
    simulate_weights,
    stored_mb,
    weight_codes,
)
from .qengine import packing
from .sizes import MB
from .threads import num_threads
from .torch_internals import with_children

REAL = "real int8"
FLOAT = "float"
DEFAULT_SENSITIVITY_TOKENS = 1000
# Tokens a pass holds at once: the evaluation's own chunk, so a real int8 part sees the activation ranges (taken
# afresh at every call) that ``evaluate`` gives it, and each cell equals ``output_fidelity`` on that model.
SEGMENT = BPTT
# Rounded decoders beside float in one pass: each is a float copy of the largest weight. Other parts' candidates
# are small (an LSTM layer) or rounded as looked up (the embedding), so all of them share one pass.
DECODERS_PER_PASS = 2

Progress = Callable[[str, int, int], None]


# --- parts -------------------------------------------------------------------------------------

def parts(model: nn.Module) -> list[str]:
    """The parts a map quantizes one at a time: ``embedding``, ``lstm.0`` ... ``lstm.{L-1}``, ``decoder``."""
    return ["embedding"] + [f"lstm.{k}" for k in range(model.rnn.num_layers)] + ["decoder"]


def part_label(part: str) -> str:
    """What a page calls a part: ``LSTM layer 2`` for ``lstm.2``."""
    return f"LSTM layer {part.split('.')[1]}" if part.startswith("lstm.") else part


def part_weights(model: nn.Module, part: str) -> list[str]:
    """The state_dict names of the weights (not biases) a part holds."""
    if part == "embedding":
        return ["encoder.weight"]
    if part == "decoder":
        return ["decoder.weight"]
    if part.startswith("lstm.") and part.split(".")[1].isdigit() and int(part.split(".")[1]) < model.rnn.num_layers:
        k = int(part.split(".")[1])
        return [f"rnn.weight_ih_l{k}", f"rnn.weight_hh_l{k}"]
    raise WlmError(f"unknown part {part!r}; choose one of {', '.join(parts(model))}")


# --- one LSTM layer on its own -------------------------------------------------------------------

class SplitLSTM(nn.Module):
    """A stacked ``nn.LSTM`` as one single-layer ``nn.LSTM`` per layer sharing its weights, so that one layer
    can be swapped for a quantized one. Called like the stacked module and computes the same."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if lstm.bidirectional or lstm.proj_size or lstm.batch_first:
            raise WlmError("only a plain unidirectional LSTM (as in the tutorial's model) can be split")
        self.num_layers, self.hidden_size, self.dropout = lstm.num_layers, lstm.hidden_size, lstm.dropout
        self.layers = nn.ModuleList(_one_layer(lstm, k) for k in range(lstm.num_layers))

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor]):
        h0, c0 = hx
        h_n, c_n = [], []
        for k, layer in enumerate(self.layers):
            input, (h, c) = layer(input, (h0[k:k + 1], c0[k:k + 1]))
            h_n.append(h), c_n.append(c)
            if k < self.num_layers - 1:  # as nn.LSTM: dropout between layers, in training only
                input = nn.functional.dropout(input, self.dropout, self.training)
        return input, (torch.cat(h_n), torch.cat(c_n))


def _one_layer(lstm: nn.LSTM, k: int) -> nn.LSTM:
    with torch.device("meta"):  # its own weights are replaced at once: nothing to allocate or initialise
        layer = nn.LSTM(lstm.input_size if k == 0 else lstm.hidden_size, lstm.hidden_size, 1, bias=lstm.bias)
    for name in layer._flat_weights_names:  # weight_ih_l0 ... of the new layer are weight_ih_lk ... of the stack
        setattr(layer, name, getattr(lstm, name.replace("_l0", f"_l{k}")))
    return layer.train(lstm.training)


def split_model(model: nn.Module) -> nn.Module:
    """``model`` with its LSTM split into single layers (``SplitLSTM``); weights shared, ``model`` untouched."""
    split = with_children(model, {**dict(model.named_children()), "rnn": SplitLSTM(model.rnn)})
    split.training = False
    return split


def quantize_lstm_layer(layer: nn.LSTM) -> nn.Module:
    """A single-layer LSTM as torch's dynamic int8 LSTM (``quantize_dynamic``); ``layer`` is not changed."""
    return _quantized_copy(layer, tq.default_dynamic_qconfig)


def quantize_part(model: nn.Module, part: str) -> nn.Module:
    """``model`` with only ``part`` dynamically quantized to int8 by torch, the rest its own float modules."""
    part_weights(model, part)
    children = dict(model.named_children())
    if part == "embedding":
        children["encoder"] = _real_embedding(model.encoder)
    elif part == "decoder":
        children["decoder"] = _real_decoder(model.decoder)
    else:
        split = SplitLSTM(model.rnn).eval()
        k = int(part.split(".")[1])
        split.layers[k] = quantize_lstm_layer(split.layers[k])
        children["rnn"] = split
    quantized = with_children(model, children)
    quantized.training = False
    return quantized


def _quantized_copy(module: nn.Module, qconfig) -> nn.Module:
    """Torch's dynamically quantized version of ``module`` (quantized in place on our own copy: ``quantize_dynamic``
    would otherwise copy it once more, and the embedding is 68 MB)."""
    with packing():
        return tq.quantize_dynamic(nn.Sequential(copy.deepcopy(module)), {type(module): qconfig}, inplace=True)[0]


def _real_embedding(embedding: nn.Embedding) -> nn.Module:
    return _quantized_copy(embedding, tq.float_qparams_weight_only_qconfig)


def _real_decoder(decoder: nn.Linear) -> nn.Module:
    return _quantized_copy(decoder, tq.default_dynamic_qconfig)


# --- candidates: what replaces one stage ---------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One cell of the map: how ``part`` is quantized (``scheme`` 'real int8' or a ``low_bits`` scheme)."""

    part: str
    scheme: str
    bits: int
    group_size: int = 0  # per-group schemes only

    @property
    def rounding(self) -> Rounding | None:
        return None if self.scheme in (REAL, FLOAT) else Rounding(self.bits, self.scheme,
                                                                   self.group_size or DEFAULT_GROUP_SIZE)


class _RoundedRows(nn.Module):
    """An embedding whose looked-up rows are rounded as the whole table would round them, without a rounded
    copy of the table: per-row and per-group grids are local to a row, and a per-tensor grid is given the
    whole table's range."""

    def __init__(self, embedding: nn.Embedding, rounding: Rounding):
        super().__init__()
        self.table, self.rounding = embedding.weight, rounding
        self.range = (float(self.table.min()), float(self.table.max()))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.table[ids.reshape(-1)]
        r = self.rounding
        rounded = weight_codes(rows, r.bits, r.scheme, r.group_size, tensor_range=self.range).values()
        return rounded.reshape(*ids.shape, -1)


@torch.no_grad()
def _candidate(model: nn.Module, split: SplitLSTM, cell: Cell) -> nn.Module:
    """The module that takes the place of ``cell.part``'s stage."""
    if cell.part == "embedding":
        return _real_embedding(model.encoder) if cell.scheme == REAL else _RoundedRows(model.encoder, cell.rounding)
    if cell.part == "decoder":
        if cell.scheme == REAL:
            return _real_decoder(model.decoder)
        decoder = copy.deepcopy(model.decoder)
        decoder.weight.copy_(round_weight(model.decoder.weight, cell.bits, cell.scheme, cell.rounding.group_size))
        return decoder
    layer = split.layers[int(cell.part.split(".")[1])]
    if cell.scheme == REAL:
        return quantize_lstm_layer(layer)
    rounded = copy.deepcopy(layer)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        getattr(rounded, name).copy_(round_weight(getattr(layer, name), cell.bits, cell.scheme,
                                                  cell.rounding.group_size))
    return rounded


# --- one pass: float and a few candidates for one part, side by side ------------------------------

@dataclass
class _Totals:
    nll: float = 0.0
    kl: float = 0.0
    agree: int = 0


@torch.no_grad()
def _pass(model: nn.Module, split: SplitLSTM, stage: int, candidates: list[nn.Module], data: torch.Tensor,
          progress: Callable[[int], None] | None = None) -> tuple[list[_Totals], int]:
    """Score float (index 0) and ``candidates`` standing in for stage ``stage`` (0 the embedding, 1..L the
    LSTM layers, L+1 the decoder) over ``data``; returns each one's summed NLL, KL and top-1 agreements."""
    layers = list(split.layers)
    last = len(layers) + 1
    n = len(candidates) + 1
    hidden: dict = {}  # (layer, who) -> carried (h, c); who is "float" before the stage, a candidate index at it,
    # and "all" after it, where the candidates and float run as one batch
    totals = [_Totals() for _ in range(n)]
    inputs, targets = data[:-1], data[1:]

    def run(layer: nn.Module, x: torch.Tensor, key) -> torch.Tensor:
        out, hidden[key] = layer(x, hidden.get(key) or _zeros(layer, x.shape[1]))
        return out

    for start in range(0, len(inputs), SEGMENT):
        ids = inputs[start:start + SEGMENT].reshape(-1, 1)
        if stage == 0:
            x = torch.cat([model.encoder(ids)] + [c(ids) for c in candidates], dim=1)
        else:
            x = model.encoder(ids)
        for k, layer in enumerate(layers, start=1):
            if k < stage:
                x = run(layer, x, (k, "float"))
            elif k == stage:
                x = torch.cat([run(layer, x, (k, 0))] + [run(c, x, (k, i)) for i, c in enumerate(candidates, 1)],
                              dim=1)
            else:
                x = run(layer, x, (k, "all"))
        decoders = [model.decoder] + candidates if stage == last else [model.decoder] * n
        _score(x, targets[start:start + SEGMENT], decoders, totals)
        if progress is not None:
            progress(min(start + SEGMENT, len(inputs)))
    return totals, len(inputs)


def _zeros(layer: nn.Module, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, batch, layer.hidden_size)
    return torch.zeros(shape), torch.zeros(shape)


def _score(features: torch.Tensor, targets: torch.Tensor, decoders: list[nn.Module], totals: list[_Totals]) -> None:
    """Add each candidate's NLL, KL(float ‖ candidate) and top-1 agreements over these positions. ``features`` is
    (positions, 1 or candidates+1, hidden): one shared input for every decoder, or one per candidate."""
    goal = targets.reshape(-1, 1)
    for i, decoder in enumerate(decoders):
        logp = torch.log_softmax(decoder(features[:, i if features.shape[1] > 1 else 0]), dim=-1)
        if i == 0:
            float_logp, float_p, float_top = logp, logp.exp(), logp.argmax(-1, keepdim=True)
        else:
            totals[i].kl += float((float_p * (float_logp - logp)).sum(-1).clamp_min(0).sum())
            # The same first pick: float's top word is also this model's top (amax is several times quicker than
            # argmax); a tie counts as agreement.
            totals[i].agree += int((logp.gather(1, float_top) >= logp.amax(-1, keepdim=True)).sum())
        totals[i].nll -= float(logp.gather(1, goal).sum())


# --- the map -------------------------------------------------------------------------------------

def map_cells(model: nn.Module, *, bits=SWEEP_BITS, schemes=SWEEP_SCHEMES,
              group_size: int = DEFAULT_GROUP_SIZE) -> list[Cell]:
    """Every cell of a map: per part, real int8 then each scheme at each width."""
    bits = [check_bits(b) for b in bits]
    schemes = [check_scheme(s) for s in schemes]
    group_size = check_group_size(group_size)
    return [cell for part in parts(model) for cell in
            [Cell(part, REAL, 8)] + [Cell(part, s, b, group_size if "per-group" in s else 0)
                                     for s in schemes for b in bits]]


def _check_tokens(data: torch.Tensor, max_tokens: int | None) -> torch.Tensor:
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 2):
        raise WlmError(f"max_tokens must be a whole number of at least 2, got {max_tokens!r}")
    return data if max_tokens is None else data[:max_tokens]


def sensitivity(model: nn.Module, data: torch.Tensor, *, bits=SWEEP_BITS, schemes=SWEEP_SCHEMES,
                group_size: int = DEFAULT_GROUP_SIZE, max_tokens: int | None = DEFAULT_SENSITIVITY_TOKENS,
                threads: int | None = 1, progress: Progress | None = None) -> pd.DataFrame:
    """The sensitivity map: each part quantized alone, every cell scored against float on the same tokens.

    Columns: part, scheme ('real int8' or a ``low_bits`` scheme), group_size (0 unless per group), bits,
    loss, delta_loss, kl_mean, top1_agreement, size_mb (the part stored so), tokens.
    ``progress(part, done, total)`` counts tokens over all of a part's passes.
    """
    data = _check_tokens(data, max_tokens)
    cells = map_cells(model, bits=bits, schemes=schemes, group_size=group_size)
    split = SplitLSTM(model.rnn).eval()
    order = parts(model)
    rows = []
    with num_threads(threads):
        for part in order:
            stage = order.index(part)
            mine = [c for c in cells if c.part == part]
            per_pass = _per_pass(part, len(mine))
            passes = math.ceil(len(mine) / per_pass)
            for p in range(passes):
                batch = mine[p * per_pass:(p + 1) * per_pass]
                candidates = [_candidate(model, split, c) for c in batch]
                steps = len(data) - 1

                def report(done, p=p, part=part):
                    if progress is not None:
                        progress(part, p * steps + done, passes * steps)

                totals, positions = _pass(model, split, stage, candidates, data, report)
                float_loss = totals[0].nll / positions
                for cell, total in zip(batch, totals[1:]):
                    loss = total.nll / positions
                    rows.append({"part": part, "scheme": cell.scheme, "group_size": cell.group_size,
                                 "bits": cell.bits, "loss": loss, "delta_loss": loss - float_loss,
                                 "kl_mean": total.kl / positions, "top1_agreement": total.agree / positions,
                                 "size_mb": part_mb(model, cell), "tokens": positions})
                del candidates
    return pd.DataFrame(rows, columns=["part", "scheme", "group_size", "bits", "loss", "delta_loss", "kl_mean",
                                       "top1_agreement", "size_mb", "tokens"])


def _per_pass(part: str, cells: int) -> int:
    return DECODERS_PER_PASS if part == "decoder" else max(cells, 1)


def estimate_sensitivity_seconds(model: nn.Module, data: torch.Tensor, *, bits=SWEEP_BITS, schemes=SWEEP_SCHEMES,
                                 group_size: int = DEFAULT_GROUP_SIZE,
                                 max_tokens: int | None = DEFAULT_SENSITIVITY_TOKENS, threads: int | None = 1,
                                 probe_tokens: int = 60) -> float:
    """How long ``sensitivity`` will take: one pass of the decoder and one of the first LSTM layer, each with as
    many candidates as a pass of theirs holds, on ``probe_tokens`` tokens, scaled to every pass and every token."""
    data = _check_tokens(data, max_tokens)
    cells = map_cells(model, bits=bits, schemes=schemes, group_size=group_size)
    probe = data[:min(probe_tokens, len(data))]
    split = SplitLSTM(model.rnn).eval()
    order = parts(model)
    seconds = 0.0
    with num_threads(threads):
        for part, count in (("decoder", 1), ("lstm.0", len(order) - 1)):
            mine = [c for c in cells if c.part == part]
            per_pass = _per_pass(part, len(mine))
            start = time.perf_counter()
            candidates = [_candidate(model, split, c) for c in mine[:per_pass]]
            built = time.perf_counter()
            _pass(model, split, order.index(part), candidates, probe)
            ran = time.perf_counter()
            passes = math.ceil(len(mine) / per_pass)
            seconds += count * passes * ((built - start) + (ran - built) * (len(data) - 1) / max(len(probe) - 1, 1))
    return seconds


def part_mb(model: nn.Module, cell: Cell) -> float:
    """What ``cell.part`` takes stored (MB): its weights as the cell stores them, its biases as float32."""
    names = part_weights(model, cell.part)
    state = model.state_dict()
    prefix = names[0].split(".")[0]
    tensors = {n: t for n, t in state.items() if n.startswith(prefix + ".") and
               (cell.part in ("embedding", "decoder") or n.endswith(f"_l{cell.part.split('.')[1]}"))}
    if cell.scheme == FLOAT:
        return sum(t.numel() for t in tensors.values()) * 4 / MB
    rounding = cell.rounding or Rounding(8)  # torch's int8: 8-bit codes and one scale per tensor
    if cell.scheme == REAL and cell.part == "embedding":
        rounding = Rounding(8, "per-row-asym")  # torch's 8-bit embedding: a scale and an offset per row
    return stored_mb(tensors, {n: rounding for n in names})


def _at_lowest(table: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    simulated = table[table["scheme"] != REAL]
    width = int(simulated["bits"].min())
    return width, simulated[simulated["bits"] == width]


def worst_part(table: pd.DataFrame) -> str:
    """The part that costs most at the map's lowest width even under its best scheme (the largest of each
    part's least mean KL there)."""
    _, at = _at_lowest(table)
    return str(at.groupby("part", sort=False)["kl_mean"].min().idxmax())


def takeaway(table: pd.DataFrame) -> str:
    """One line: the part that costs most at the lowest width, the one that costs least, and real int8's worst."""
    width, at = _at_lowest(table)
    worst, best = worst_part(table), str(at.groupby("part", sort=False)["kl_mean"].min().idxmin())

    def span(part: str) -> str:
        rows = at[at["part"] == part].sort_values("delta_loss")
        low, high = rows.iloc[0], rows.iloc[-1]
        return (f"{low['delta_loss']:+.3f} nats ({_scheme_name(low)}) to {high['delta_loss']:+.3f} "
                f"({_scheme_name(high)})")

    text = (f"{part_label(worst)} costs most: alone at {width} bits it moves the loss by {span(worst)}, while "
            f"{part_label(best)} moves it by {span(best)}.")
    real = table[table["scheme"] == REAL].set_index("part")
    if len(real):
        costly = str(real["kl_mean"].idxmax())
        text += (f" In real int8 the costliest part is {part_label(costly)} "
                 f"(mean KL {real.loc[costly, 'kl_mean']:.2g} nats, Δ loss {real.loc[costly, 'delta_loss']:+.4f}).")
    return text


def _scheme_name(row) -> str:
    return scheme_label(row["scheme"], int(row["group_size"])) if "per-group" in row["scheme"] else row["scheme"]


# --- a mixed-precision pick under a size budget ------------------------------------------------------

@dataclass(frozen=True)
class Mix:
    """Bits per part: each part's cell (``FLOAT`` for a part left in float), with its stored size and the loss
    change the map predicts (the parts' changes added up) and, once measured, the real one."""

    cells: dict[str, Cell]
    size_mb: float
    predicted_delta_loss: float
    predicted_kl: float
    delta_loss: float | None = None  # measured on the whole mixed model
    loss: float | None = None
    tokens: int | None = None
    label: str = field(default="")

    @property
    def key(self) -> tuple:
        """What the mix is, hashable: its cells in part order (a cache key)."""
        return tuple(self.cells.values())

    def roundings(self, model: nn.Module) -> dict[str, Rounding]:
        return {name: cell.rounding for part, cell in self.cells.items() if cell.rounding is not None
                for name in part_weights(model, part)}

    def describe(self) -> str:
        """The pick in words, e.g. 'embedding 4-bit per-group 64, LSTM layer 0 float, ...'."""
        return ", ".join(f"{part_label(part)} " + ("float" if cell.scheme == FLOAT else
                                                   Rounding(cell.bits, cell.scheme,
                                                            cell.group_size or DEFAULT_GROUP_SIZE).label)
                         for part, cell in self.cells.items())

    def to_dict(self) -> dict:
        return {"bits": {part: cell.bits for part, cell in self.cells.items()},
                "schemes": {part: scheme_label(cell.scheme, cell.group_size or DEFAULT_GROUP_SIZE)
                            if cell.scheme not in (REAL, FLOAT) else cell.scheme for part, cell in self.cells.items()},
                "size_mb": self.size_mb, "delta_loss": self.delta_loss, "loss": self.loss, "tokens": self.tokens,
                "predicted_delta_loss": self.predicted_delta_loss, "predicted_kl": self.predicted_kl}


def _options(model: nn.Module, table: pd.DataFrame, part: str) -> list[tuple[float, float, float, Cell]]:
    """A part's choices as (size MB, KL, Δloss, cell): float, and each simulated cell of the map."""
    rows = table[(table["part"] == part) & (table["scheme"] != REAL)]
    float_cell = Cell(part, FLOAT, FLOAT_BITS)
    options = [(part_mb(model, float_cell), 0.0, 0.0, float_cell)]
    for row in rows.itertuples():
        cell = Cell(part, row.scheme, int(row.bits), int(row.group_size))
        options.append((float(row.size_mb), float(row.kl_mean), float(row.delta_loss), cell))
    return options


def frontier(model: nn.Module, table: pd.DataFrame) -> list[Mix]:
    """Every pick no other beats on both size and summed mean KL, smallest first (exact under the map's
    assumption that the parts' costs add up). Ranked by KL rather than Δloss: on a few thousand tokens a lucky
    rounding can lower the loss, but never the KL."""
    front: list[tuple[float, float, float, tuple[Cell, ...]]] = [(0.0, 0.0, 0.0, ())]
    for part in parts(model):
        options = _options(model, table, part)
        merged = sorted(((s + so, k + ko, d + do, cells + (c,)) for s, k, d, cells in front
                         for so, ko, do, c in options), key=lambda t: (t[0], t[1]))
        front, best = [], math.inf
        for entry in merged:
            if entry[1] < best:
                front.append(entry)
                best = entry[1]
    return [Mix({c.part: c for c in cells}, size, delta, kl) for size, kl, delta, cells in front]


def float_mb(model: nn.Module) -> float:
    """The float model stored (MB): every tensor as float32."""
    return stored_mb(model.state_dict(), {})


def pick(model: nn.Module, table: pd.DataFrame, budget_mb: float, front: list[Mix] | None = None) -> Mix:
    """The pick with the least summed mean KL whose stored size is within ``budget_mb`` (from ``front``, the map's
    ``frontier``, when the caller has it)."""
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
        raise WlmError(f"the size budget must be a positive number of MB, got {budget_mb!r}")
    front = frontier(model, table) if front is None else front
    within = [mix for mix in front if mix.size_mb <= budget_mb]
    if not within:
        raise WlmError(f"no mix of the map's cells fits in {budget_mb:g} MB: the smallest is "
                       f"{front[0].size_mb:.1f} MB; raise the budget or add lower widths to the map")
    return within[-1]


def measure(model: nn.Module, mix: Mix, data: torch.Tensor, *, max_tokens: int | None = DEFAULT_SENSITIVITY_TOKENS,
            float_loss: float | None = None, threads: int | None = 1,
            progress: Callable[[int, int], None] | None = None) -> Mix:
    """``mix`` with its loss change measured on the whole mixed model (all its parts rounded at once)."""
    data = _check_tokens(data, max_tokens)
    with num_threads(threads):
        if float_loss is None:
            float_loss = evaluate(model, data).loss
        result = evaluate(mixed_model(model, mix), data, progress=progress)
    return Mix(mix.cells, mix.size_mb, mix.predicted_delta_loss, mix.predicted_kl, result.loss - float_loss,
               result.loss, result.tokens, mix.label)


def mixed_model(model: nn.Module, mix: Mix) -> nn.Module:
    """The float model with each part rounded as ``mix`` says (simulated; works with evaluate and generate)."""
    if any(cell.scheme == REAL for cell in mix.cells.values()):
        raise WlmError("a mix is made of simulated widths and float; real int8 cells are for the map only")
    return simulate_weights(model, mix.roundings(model))


def uniform_mix(model: nn.Module, table: pd.DataFrame, scheme: str, bits: int, group_size: int = DEFAULT_GROUP_SIZE,
                embedding: bool = True) -> Mix:
    """Every part (the embedding unless told) at the same width and scheme, as a ``Mix``, with the map's
    prediction."""
    cells = {}
    for part in parts(model):
        if part == "embedding" and not embedding:
            cells[part] = Cell(part, FLOAT, FLOAT_BITS)
        else:
            cells[part] = Cell(part, check_scheme(scheme), check_bits(bits),
                               check_group_size(group_size) if "per-group" in scheme else 0)
    keyed = table.set_index(["part", "scheme", "bits"])
    predicted = [keyed.loc[(p, c.scheme, c.bits)] for p, c in cells.items() if c.scheme != FLOAT
                 and (p, c.scheme, c.bits) in keyed.index]
    mix = Mix(cells, sum(part_mb(model, c) for c in cells.values()),
              float(sum(r["delta_loss"] for r in predicted)), float(sum(r["kl_mean"] for r in predicted)),
              label=f"all {bits}-bit {scheme_label(scheme, group_size)}")
    return mix


def readable_map(table: pd.DataFrame) -> pd.DataFrame:
    """The map for people: a row per part and scheme, a column per width, each cell 'Δ loss (mean KL)'."""
    shown = table.assign(
        part=table["part"].map(part_label),
        scheme=[scheme_label(s, int(g)) if "per-group" in s else s for s, g in zip(table["scheme"],
                                                                                  table["group_size"])],
        cell=[f"{d:+.4f} ({k:.2g})" for d, k in zip(table["delta_loss"], table["kl_mean"])])
    wide = shown.pivot_table(index=["part", "scheme"], columns="bits", values="cell", aggfunc="first", sort=False)
    wide = wide[sorted(wide.columns, reverse=True)]
    wide.columns = [f"{b} bits" for b in wide.columns]
    return wide.fillna("").reset_index()


# --- the trade-off: uniform widths against mixes of the same size ---------------------------------

def tradeoff(model: nn.Module, table: pd.DataFrame, data: torch.Tensor, budget_mb: float, *,
             max_tokens: int | None = DEFAULT_SENSITIVITY_TOKENS, threads: int | None = 1,
             progress: Progress | None = None, cache: dict | None = None) -> tuple[pd.DataFrame, Mix]:
    """Size against measured Δ loss for every uniform choice of the map (all parts, the embedding included, at one
    width and scheme), the best mix at each of those sizes, and the mix picked for ``budget_mb``.

    Returns the table (columns: kind 'uniform' | 'mix' | 'pick', label, scheme, bits and group_size (a uniform
    choice's; empty for mixes), size_mb, delta_loss, predicted_delta_loss, tokens) and the measured pick.
    ``cache``, a dict kept for one model and data, saves evaluations by the mix's cells."""
    data = _check_tokens(data, max_tokens)
    cache = {} if cache is None else cache
    front = frontier(model, table)
    chosen = pick(model, table, budget_mb, front)
    simulated = table[table["scheme"] != REAL]
    uniform = [uniform_mix(model, table, s, int(b), int(g) or DEFAULT_GROUP_SIZE)
               for (s, b, g), _ in simulated.groupby(["scheme", "bits", "group_size"], sort=False)]
    matched: dict[tuple, Mix] = {}  # uniform choices of one size share their mix
    for mix in uniform:
        within = [m for m in front if m.size_mb <= mix.size_mb]
        if within:
            matched.setdefault(within[-1].key, within[-1])
    points = [("uniform", m) for m in uniform] + [("mix", m) for m in matched.values()] + [("pick", chosen)]
    rows = []
    with num_threads(threads):
        key = ("float",)
        if key not in cache:
            cache[key] = evaluate(model, data)
        float_loss = cache[key].loss
        for n, (kind, mix) in enumerate(points):
            key = mix.key
            if key not in cache:
                report = None if progress is None else (lambda d, t, n=n: progress("trade-off", n * t + d,
                                                                                   len(points) * t))
                cache[key] = evaluate(mixed_model(model, mix), data, progress=report)
            result = cache[key]
            one = next(iter(mix.cells.values())) if kind == "uniform" else None  # a uniform choice's one cell
            rows.append({"kind": kind, "label": mix.label or mix.describe(),
                         "scheme": one.scheme if one else None, "bits": one.bits if one else None,
                         "group_size": one.group_size if one else None, "size_mb": mix.size_mb,
                         "delta_loss": result.loss - float_loss, "predicted_delta_loss": mix.predicted_delta_loss,
                         "tokens": result.tokens})
    picked = rows[-1]
    measured = Mix(chosen.cells, chosen.size_mb, chosen.predicted_delta_loss, chosen.predicted_kl,
                   picked["delta_loss"], picked["delta_loss"] + float_loss, picked["tokens"], chosen.label)
    return pd.DataFrame(rows), measured
