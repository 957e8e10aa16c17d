"""Static or dynamic: activation scales fixed ahead of time from calibration text, against dynamic quantization's
scales picked from every input at run time, on the tutorial's model.

A dynamically quantized matmul (``wlm.dynamic_multiply``) picks its activation's scale and zero point from that
activation every time it runs. Static quantization fixes them ahead of time: observers watch the activations at
the same points while the float model reads calibration text, and each point's observed range becomes one fixed
(scale, zero point). The points are the inputs of every quantized matmul of the tutorial's variant: for each LSTM
layer its input product (x -> W_ih, one scale for a whole 25-word chunk, as torch computes it for all steps at
once) and its recurrent product (h -> W_hh, one scale per step), and the decoder's input (one scale per chunk).
The observers are torch's own (``MinMaxObserver``, ``HistogramObserver``) with the settings dynamic quantization
uses on x86: quint8, per-tensor affine, ``reduce_range`` (codes 0-127).

PyTorch's eager mode has no statically quantized LSTM, so the static variants are simulated: ``SimulatedModel``
runs the LSTM step by step in plain tensor operations with the real variant's int8 weights, and quantizes the
activation at each of those points either per input (dynamic), computed as torch's fbgemm kernels compute it,
so that its logits equal the real dynamic model's bit for bit (the tests check it), or with the calibrated fixed
pairs (static, fake-quantized: rounded and clipped to codes 0-127, the observer's range, then multiplied as
integers). The decoder alone also runs on torch's real static path (eager mode: ``QuantStub``, ``prepare``,
calibration, ``convert``), which also rounds its output, the logits, and stores its input in quint8 (codes up to
255: values above the calibrated range, which ends at code 127, are clipped there only past code 255).

Every row is scored by ``wlm.evaluate``'s loop on the same test tokens: the float model, the real dynamic variant
and the real static decoder by ``evaluate`` itself, the simulated variants together, each as a row of one batch
(``score``), through the same ``chunks``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.ao import quantization as tq
from torch.ao.quantization import HistogramObserver, MinMaxObserver
from torch.nn import functional as F

from .dynamic_multiply import ACTIVATION_QMAX, ACTIVATION_QMIN, layer_names
from .errors import WlmError
from .evaluate import BPTT, EvalResult, chunks, evaluate, limit_tokens
from .fidelity import quantized_weights
from .qengine import available_engines, current_engine, quantized_engine
from .quantize import preset, quantize
from .threads import num_threads
from .torch_internals import with_children

OBSERVERS = ("min-max", "histogram")
_OBSERVER_CLASSES = {"min-max": MinMaxObserver, "histogram": HistogramObserver}
# What dynamic quantization uses for activations on x86 (fbgemm): unsigned 8-bit, one scale and zero point per
# tensor, 7 of the 8 bits (see wlm.dynamic_multiply).
ACTIVATION_DTYPE, ACTIVATION_QSCHEME, REDUCE_RANGE = torch.quint8, torch.per_tensor_affine, True
# reduce_range=True spelled as torch now asks for it (the codes it means, 0-127): the observers compute the same
# pairs either way, and this spelling draws no deprecation notice.
OBSERVER_SETTINGS = {"dtype": ACTIVATION_DTYPE, "qscheme": ACTIVATION_QSCHEME, "quant_min": ACTIVATION_QMIN,
                     "quant_max": ACTIVATION_QMAX}
STORED_QMAX = 255  # what a quint8 tensor holds: torch's real kernels clamp there, not at the observer's 127

DEFAULT_STATIC_TOKENS = 2_000  # test tokens scored (a run of every row takes about a minute here on one thread)
DEFAULT_CALIBRATION_TOKENS = 5_000  # training tokens the main static rows are calibrated on
CALIBRATION_SIZES = (100, 1_000, 5_000, 20_000)  # the loss-against-calibration-size study
FEED_BLOCK = 500  # calibration rows handed to the observers at once (a histogram observer call is costly)

STUDIES = ("variants", "calibration size", "calibration text")
KERNELS_FLOAT, KERNELS_REAL, KERNELS_SIMULATED = "float", "real", "simulated"
DYNAMIC, DYNAMIC_SIMULATED = "dynamic", "dynamic (simulated)"
ROW_COLUMNS = ["study", "activations", "kernels", "calibration", "calibration_tokens", "loss", "delta_loss",
               "clipped_share", "tokens", "seconds", "tokens_per_s"]
# The plain names the page and the CLI's markdown show the columns under (the data keeps its code names).
COLUMN_NAMES = {
    "study": "study", "activations": "activations", "kernels": "kernels", "calibration": "calibrated on",
    "calibration_tokens": "calibration tokens", "loss": "loss", "delta_loss": "Δ loss vs float",
    "clipped_share": "clipped", "tokens": "predictions", "seconds": "seconds", "tokens_per_s": "tokens/s",
    "point": "point", "input": "input", "calls": "inputs seen", "runtime_low": "run-time low",
    "runtime_high": "run-time high", "runtime_scale_min": "run-time scale (smallest)",
    "runtime_scale_median": "run-time scale (median)", "runtime_scale_max": "run-time scale (largest)",
}

Progress = Callable[[str, int, int], None]  # (stage, done, total)
QParams = tuple[float, int]  # scale (a float32 value) and zero point


# --- the points, the observers ---------------------------------------------------------------------------------

def input_points(model: nn.Module) -> list[str]:
    """The input of every quantized matmul, named by its weight: ``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``, …,
    ``decoder`` (the names of ``wlm.dynamic_multiply``)."""
    return layer_names(model)


def point_label(point: str) -> str:
    """A point in a few words: 'layer 0, x → W_ih', 'layer 0, h → W_hh', 'decoder, h → W'."""
    if point == "decoder":
        return "decoder, h → W"
    kind, layer = point.removeprefix("rnn.weight_").split("_l")
    return f"layer {layer}, {'x → W_ih' if kind == 'ih' else 'h → W_hh'}"


def check_observer(name: str) -> str:
    if name not in _OBSERVER_CLASSES:
        raise WlmError(f"unknown observer {name!r}; choose one of {', '.join(OBSERVERS)}")
    return name


def parse_observers(text: str) -> list[str]:
    names = [check_observer(n.strip()) for n in text.split(",") if n.strip()]
    if not names:
        raise WlmError(f"name at least one observer ({', '.join(OBSERVERS)}), e.g. --observers min-max")
    return list(dict.fromkeys(names))


def make_observer(name: str):
    """A fresh torch observer with dynamic quantization's activation settings on x86."""
    return _OBSERVER_CLASSES[check_observer(name)](**OBSERVER_SETTINGS)


def observer_qparams(observer) -> QParams:
    scale, zero_point = observer.calculate_qparams()
    return float(scale), int(zero_point)


def qparams_bounds(qparams: QParams, qmax: int = ACTIVATION_QMAX) -> tuple[float, float]:
    """The lowest and highest value the fixed pair represents (codes 0 and 127)."""
    scale, zero_point = qparams
    return (ACTIVATION_QMIN - zero_point) * scale, (qmax - zero_point) * scale


def runtime_qparams(low: float, high: float) -> QParams:
    """The scale and zero point fbgemm picks at run time for an activation whose min and max are ``low`` and
    ``high`` (``wlm.dynamic_multiply.activation_qparams`` from the two numbers alone)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / (ACTIVATION_QMAX - ACTIVATION_QMIN)
    if np.float32(scale) == 0 or math.isinf(1.0 / np.float32(scale)):
        scale = 0.1  # an all-zero input: any scale represents it
    zero_point = int(min(max(round(ACTIVATION_QMIN - low / scale), ACTIVATION_QMIN), ACTIVATION_QMAX))
    return float(np.float32(scale)), zero_point


def check_tokens(tokens: int, what: str, option: str) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 2:
        raise WlmError(f"{what} must be a whole number of at least 2 (one input and one more), got {tokens!r}; "
                       f"pass e.g. {option} 1000")
    return int(tokens)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise WlmError(f"--sizes takes whole numbers separated by commas, e.g. 100,1000,5000; got {text!r}") from None
    if not sizes:
        raise WlmError("--sizes needs at least one calibration size, e.g. 100,1000,5000")
    return [check_tokens(s, "a calibration size", "--sizes 100,") for s in sizes]


# --- calibration ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """Fixed activation quantization parameters for every point, from one observer on one text."""

    observer: str
    text: str  # the split it read ("train" or "test")
    tokens: int  # counted as ``evaluate`` counts them: the model read tokens - 1 of them
    qparams: dict  # point -> (scale, zero point)
    seen: dict  # point -> (min, max) of what the observer saw there

    @property
    def activations(self) -> str:
        return f"static {self.observer}"

    def bounds(self, point: str) -> tuple[float, float]:
        return qparams_bounds(self.qparams[point])


def _float_layers(model: nn.Module) -> list[nn.LSTM]:
    """Each layer of the float model's LSTM as a one-layer LSTM sharing its weights (nothing is copied)."""
    rnn = model.rnn
    layers = []
    for k in range(rnn.num_layers):
        single = nn.LSTM(rnn.input_size if k == 0 else rnn.hidden_size, rnn.hidden_size, 1)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(single, f"{name}_l0", nn.Parameter(getattr(rnn, f"{name}_l{k}").detach(), requires_grad=False))
        layers.append(single.eval())
    return layers


@torch.no_grad()
def calibrate(model: nn.Module, ids: torch.Tensor, sizes: Sequence[int], *, observers: Sequence[str] = OBSERVERS,
              text: str = "train", bptt: int = BPTT, progress: Callable[[int, int], None] | None = None,
              decoder_feed: tuple[int, Callable[[torch.Tensor], None]] | None = None) -> dict[tuple[str, int],
                                                                                           Calibration]:
    """Observe the float model's activations at every point while it reads the first tokens of ``ids`` (batch 1,
    chunks of ``bptt`` words, the state carried, as ``evaluate`` reads them), and fix each observer's
    (scale, zero point) after each of ``sizes`` tokens: {(observer, size): Calibration}, in one pass.

    ``decoder_feed=(tokens, feed)`` also hands ``feed`` every block of decoder inputs up to ``tokens`` tokens (the
    real static decoder's calibration sees what the simulated decoder point sees). ``progress(done, total)``
    counts tokens read."""
    observers = [check_observer(o) for o in observers]
    sizes = sorted({check_tokens(s, "a calibration size", "--sizes 100,") for s in sizes})
    if sizes[-1] > len(ids):
        raise WlmError(f"calibration on {sizes[-1]:,} tokens needs that many; the {text} split has {len(ids):,}")
    points = input_points(model)
    layers = _float_layers(model)
    watching = {o: {p: make_observer(o) for p in points} for o in observers}
    seen = {p: [math.inf, -math.inf] for p in points}
    pending: dict[str, list[torch.Tensor]] = {p: [] for p in points}
    hidden = [(torch.zeros(1, 1, layer.hidden_size), torch.zeros(1, 1, layer.hidden_size)) for layer in layers]
    stops = [s - 1 for s in sizes]  # tokens read when each size is complete (N tokens: N - 1 inputs)
    results: dict[tuple[str, int], Calibration] = {}
    feed_until, feed = decoder_feed if decoder_feed is not None else (0, None)

    def flush(read: int) -> None:
        for point, parts in pending.items():
            if not parts:
                continue
            block = torch.cat(parts)
            low, high = torch.aminmax(block)
            seen[point] = [min(seen[point][0], float(low)), max(seen[point][1], float(high))]
            for o in observers:
                watching[o][point](block)
            if point == "decoder" and feed is not None and read <= feed_until - 1:
                feed(block)
            parts.clear()

    read, rows = 0, 0
    for stop in stops:
        while read < stop:
            steps = min(bptt, stop - read)
            x = model.encoder(ids[read:read + steps].view(-1, 1)).float()  # (T, 1, ninp)
            for k, layer in enumerate(layers):
                h0, c0 = hidden[k]
                out, hidden[k] = layer(x, (h0, c0))
                pending[f"rnn.weight_ih_l{k}"].append(x.reshape(steps, -1))
                # the recurrent product at step t reads the state left by step t - 1 (the carried one at t = 0)
                pending[f"rnn.weight_hh_l{k}"].append(torch.cat([h0.reshape(1, -1), out[:-1].reshape(steps - 1, -1)]))
                x = out
            pending["decoder"].append(x.reshape(steps, -1))
            read, rows = read + steps, rows + steps
            if rows >= FEED_BLOCK:
                flush(read)
                rows = 0
            if progress is not None:
                progress(read, stops[-1])
        flush(read)
        rows = 0
        for o in observers:
            results[(o, stop + 1)] = Calibration(o, text, stop + 1,
                                                 {p: observer_qparams(watching[o][p]) for p in points},
                                                 {p: tuple(seen[p]) for p in points})
    return results


# --- the model run step by step, activations quantized at the points -------------------------------------------

class SimulatedModel(nn.Module):
    """The tutorial's int8 variant computed step by step in plain tensor operations, for several activation
    choices at once, each a row of the batch: ``None`` quantizes every activation with its own run-time scale
    (dynamic; the logits equal torch's real dynamic model's bit for bit), a ``{point: (scale, zero point)}``
    with those fixed pairs (static, codes clipped to 0-127).

    Each point computes what fbgemm computes: the activation to codes by one fused multiply-add (x × 1/scale +
    zero point) and rounding, the codes minus the zero point times the int8 weight codes summed exactly (float32
    holds these sums exactly: |sum| < 2^24), then × (activation scale × weight scale) + bias in one fused
    multiply-add. Reads batch 1, as the tutorial's evaluation, with ``variants`` in the batch's place: the
    hidden state is (layers, variants, hidden) and the logits (steps, variants, words).

    It records what arrives at each point (``ranges``, ``clipped``): the run-time min and max of every input for
    every row, and how many values each row clipped."""

    def __init__(self, model: nn.Module, variants: Sequence[dict | None], quantized: nn.Module | None = None):
        super().__init__()
        if not variants:
            raise ValueError("at least one variant")
        quantized = quantize(model, preset("tutorial")) if quantized is None else quantized
        weights = quantized_weights(quantized)
        self.points = input_points(model)
        self.variants = list(variants)
        self.nlayers, self.nhid = model.rnn.num_layers, model.rnn.hidden_size
        self.embedding = model.encoder.weight.detach()  # read, not registered: the float model's own
        float_state = dict(model.named_parameters())
        self._codes, self._w_scale, self._bias = {}, {}, {}
        for point in self.points:
            name = "decoder.weight" if point == "decoder" else point
            weight = weights.get(name)
            if weight is None or not weight.is_quantized or weight.qscheme() != torch.per_tensor_affine:
                raise WlmError(f"{name} of the quantized model is not an int8 weight with one scale per tensor; "
                               "static or dynamic compares against the tutorial's variant")
            self._codes[point] = weight.int_repr().float()  # (out, in), exact small integers
            self._w_scale[point] = torch.tensor(weight.q_scale(), dtype=torch.float32)
            bias = "decoder.bias" if point == "decoder" else point.replace("weight", "bias")
            self._bias[point] = float_state[bias].detach().float()
        count = len(self.variants)
        self._dynamic_rows = [v for v, chosen in enumerate(self.variants) if chosen is None]
        self._static_rows = [v for v, chosen in enumerate(self.variants) if chosen is not None]
        self._pairs: dict[str, list[tuple[float, float]]] = {}
        self._fixed: dict[str, tuple[torch.Tensor, ...]] = {}
        for point in self.points:
            pairs = [(1.0, 0.0) if chosen is None else (float(np.float32(chosen[point][0])), float(chosen[point][1]))
                     for chosen in self.variants]
            self._pairs[point] = pairs
            self._fixed[point] = self._tensors(point, [s for s, _ in pairs], [z for _, z in pairs])
        # Codes a row may take: the observer's 0-127 for a fixed pair; for a run-time pair what fbgemm stores
        # (0-255: its range never reaches past 127, but a value at the very top can round to 128).
        tops = [float(STORED_QMAX if chosen is None else ACTIVATION_QMAX) for chosen in self.variants]
        self._qmax = tops[0] if len(set(tops)) == 1 else torch.tensor(tops).view(count, 1, 1)
        self.reset_stats()

    def _tensors(self, point: str, scales: list[float], zeros: list[float]) -> tuple[torch.Tensor, ...]:
        """Scale, zero point, 1/scale (a float32 division, as fbgemm's 1.0f / scale) and the output scale."""
        scale = torch.tensor(scales, dtype=torch.float32).view(-1, 1, 1)
        return scale, torch.tensor(zeros, dtype=torch.float32).view(-1, 1, 1), 1.0 / scale, scale * self._w_scale[point]

    def reset_stats(self) -> None:
        self.position = 0  # tokens read since the reset
        self._lows: dict[str, list[list[float]]] = {p: [] for p in self.points}
        self._highs: dict[str, list[list[float]]] = {p: [] for p in self.points}
        self._at: dict[str, list[int]] = {p: [] for p in self.points}
        self._clipped = {p: torch.zeros(len(self.variants), dtype=torch.int64) for p in self.points}
        self._values = {p: 0 for p in self.points}

    def init_hidden(self, bsz: int) -> tuple[torch.Tensor, torch.Tensor]:
        if bsz != 1:
            raise WlmError("the simulated model reads batch 1, as the tutorial's evaluation does")
        shape = (self.nlayers, len(self.variants), self.nhid)
        return torch.zeros(shape), torch.zeros(shape)

    def _may_clip(self, point: str, lows: list[float], highs: list[float]) -> bool:
        """Whether some static row's input may reach past codes 0-127 (exact counting follows when it may)."""
        for v in self._static_rows:
            scale, zero = self._pairs[point][v]
            if lows[v] / scale + zero < -0.499 or highs[v] / scale + zero > ACTIVATION_QMAX + 0.499:
                return True
        return False

    def _multiply(self, point: str, x: torch.Tensor, position: int) -> torch.Tensor:
        """``x`` (variants, rows, inputs) through the point's quantized matmul: (variants, rows, outputs)."""
        count = x.shape[0]
        low, high = torch.aminmax(x.reshape(count, -1), dim=1)
        lows, highs = low.tolist(), high.tolist()
        self._lows[point].append(lows)
        self._highs[point].append(highs)
        self._at[point].append(position)
        self._values[point] += x.numel() // count
        if self._dynamic_rows:
            pairs = list(self._pairs[point])
            for v in self._dynamic_rows:
                pairs[v] = runtime_qparams(lows[v], highs[v])
            scale, zero, inverse, output_scale = self._tensors(point, [s for s, _ in pairs],
                                                               [float(z) for _, z in pairs])
        else:
            scale, zero, inverse, output_scale = self._fixed[point]
        codes = torch.addcmul(zero, x, inverse).round_()  # one rounding of x / scale + zero point, as fbgemm
        if self._static_rows and self._may_clip(point, lows, highs):
            clipped = (codes < ACTIVATION_QMIN).logical_or_(codes > self._qmax)
            self._clipped[point] += clipped.reshape(count, -1).sum(dim=1)
        codes = codes.clamp_(min=ACTIVATION_QMIN).clamp_(max=self._qmax).sub_(zero)
        sums = F.linear(codes, self._codes[point])  # exact integer sums
        return torch.addcmul(self._bias[point], sums, output_scale)

    def forward(self, input: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        if input.dim() != 2 or input.size(1) != 1:
            raise WlmError("the simulated model reads batch 1, as the tutorial's evaluation does")
        steps, count, width = input.size(0), len(self.variants), self.nhid
        x = F.embedding(input.reshape(-1), self.embedding).unsqueeze(0).expand(count, steps, -1)
        h_all, c_all = hidden
        last_h, last_c = [], []
        for k in range(self.nlayers):
            # the input product for the whole chunk at once, as torch's CPU LSTM computes it (one scale a chunk)
            ahead = self._multiply(f"rnn.weight_ih_l{k}", x, self.position)
            h, c = h_all[k], c_all[k]
            outputs = []
            recurrent = f"rnn.weight_hh_l{k}"
            for t in range(steps):
                gates = self._multiply(recurrent, h.unsqueeze(1), self.position + t).squeeze(1).add_(ahead[:, t])
                sig = gates.sigmoid()  # i, f and o; g's quarter is not used
                c = sig[:, width:2 * width] * c + sig[:, :width] * gates[:, 2 * width:3 * width].tanh()
                h = sig[:, 3 * width:] * c.tanh()
                outputs.append(h)
            x = torch.stack(outputs, 1)  # (variants, steps, hidden)
            last_h.append(h)
            last_c.append(c)
        logits = self._multiply("decoder", x, self.position)
        self.position += steps
        return logits.transpose(0, 1), (torch.stack(last_h), torch.stack(last_c))

    # --- what arrived at the points ---

    def ranges(self, point: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (the first token of each input) and the run-time min and max of every input at ``point``:
        (inputs,) and two (inputs, variants) arrays."""
        count = len(self.variants)
        return (np.array(self._at[point], dtype=int), np.array(self._lows[point]).reshape(-1, count),
                np.array(self._highs[point]).reshape(-1, count))

    def clipped(self, point: str) -> np.ndarray:
        return self._clipped[point].numpy().copy()

    def values(self, point: str) -> int:
        """Values that arrived at ``point`` for each variant."""
        return self._values[point]


@dataclass(frozen=True)
class Scored:
    result: EvalResult
    clipped: int  # activation values clipped, over every point
    values: int  # activation values that arrived, over every point

    @property
    def clipped_share(self) -> float:
        return self.clipped / self.values if self.values else 0.0


@torch.no_grad()
def score(sim: SimulatedModel, data: torch.Tensor, *, max_tokens: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> list[Scored]:
    """Each variant's loss on ``data`` as ``wlm.evaluate.evaluate`` computes it (its ``chunks``, each chunk's mean
    cross-entropy weighted by its length), all variants in one pass; the model's records start afresh."""
    sim.reset_stats()
    data, note = limit_tokens(data, max_tokens)
    count = len(sim.variants)
    totals, tokens = [0.0] * count, 0
    start = time.perf_counter()
    for targets, (logits,) in chunks([sim], data, progress=progress):
        for v in range(count):
            totals[v] += len(targets) * F.cross_entropy(logits[:, v], targets).item()
        tokens += len(targets)
    seconds = time.perf_counter() - start
    clipped = sum(sim.clipped(p) for p in sim.points)
    values = sum(sim.values(p) for p in sim.points)
    out = []
    for v in range(count):
        loss = totals[v] / tokens
        result = EvalResult(loss, math.exp(loss), tokens, seconds, tokens / seconds if seconds > 0 else math.inf, note)
        out.append(Scored(result, int(clipped[v]), int(values)))
    return out


# --- torch's real static path, for the decoder ------------------------------------------------------------------

class StaticDecoder(nn.Module):
    """The decoder on torch's eager-mode static path: a ``QuantStub`` before it and a ``DeQuantStub`` after it.
    Prepared, it observes its input and output; converted, its input is quantized with the fixed pair, the
    matmul is torch's quantized ``Linear`` (int8 weights), and its output is quantized too."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.quant = tq.QuantStub()
        self.linear = linear
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.linear(self.quant(x)))


def packing_engine() -> str:
    """The quantized engine whose kernels the simulation computes like: x86 (fbgemm), where torch offers it."""
    return "x86" if "x86" in available_engines() else current_engine()


def static_qconfig(observer: str) -> tq.QConfig:
    """Activations as ``make_observer`` observes them; weights as the tutorial's dynamic variant quantizes them
    (int8, one scale per tensor, symmetric)."""
    cls = _OBSERVER_CLASSES[check_observer(observer)]
    return tq.QConfig(activation=cls.with_args(**OBSERVER_SETTINGS), weight=tq.default_weight_observer)


def prepare_static_decoder(model: nn.Module, observer: str) -> StaticDecoder:
    """A copy of the float decoder, prepared (observers in place) for calibration; ``model`` is not changed."""
    wrapper = StaticDecoder(copy.deepcopy(model.decoder)).eval()
    wrapper.qconfig = static_qconfig(observer)
    return tq.prepare(wrapper, inplace=True)


def convert_static_decoder(prepared: StaticDecoder) -> StaticDecoder:
    return tq.convert(prepared, inplace=True)


def static_decoder_qparams(decoder: StaticDecoder) -> QParams:
    """The fixed (scale, zero point) a converted decoder quantizes its input with."""
    return float(decoder.quant.scale), int(decoder.quant.zero_point)


class _ClipCount:
    """Counts the inputs a converted static decoder receives outside its calibrated range (codes 0-127): a
    forward pre-hook, one min and max a chunk."""

    def __init__(self, decoder: StaticDecoder):
        scale, zero = static_decoder_qparams(decoder)
        self.scale, self.zero = torch.tensor(scale, dtype=torch.float32), torch.tensor(float(zero))
        self.low, self.high = qparams_bounds((scale, zero))
        self.clipped = self.values = 0

    def __call__(self, module, args):
        (x,) = args
        self.values += x.numel()
        low, high = torch.aminmax(x)
        if float(low) < self.low or float(high) > self.high:
            codes = torch.addcmul(self.zero, x, 1.0 / self.scale).round_()
            self.clipped += int(((codes < ACTIVATION_QMIN) | (codes > ACTIVATION_QMAX)).sum())


def with_static_decoder(quantized: nn.Module, decoder: StaticDecoder) -> nn.Module:
    """The dynamic variant with its decoder replaced by the converted static one (the rest shared)."""
    children = dict(quantized.named_children())
    children["decoder"] = decoder
    model = with_children(quantized, children)
    model.training = False
    return model


def activation_values(model: nn.Module, predictions: int) -> int:
    """Activation values that arrive at the quantized matmuls while the model reads ``predictions`` tokens."""
    rnn = model.rnn
    per_token = sum((rnn.input_size if k == 0 else rnn.hidden_size) + rnn.hidden_size for k in range(rnn.num_layers))
    return predictions * (per_token + rnn.hidden_size)


# --- the study ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StaticStudy:
    rows: pd.DataFrame  # ROW_COLUMNS; ``study`` says which table a row belongs to (STUDIES)
    points: pd.DataFrame  # per point: run-time ranges on the test tokens against each calibrated range
    scales: pd.DataFrame  # per input of the dynamic run: point, position, low, high, scale
    tokens: int  # test tokens scored (predictions + 1)
    calibration_tokens: int
    sizes: tuple[int, ...]
    observers: tuple[str, ...]
    notes: tuple[str, ...]  # what was clamped
    rounds: int = 1  # timings of each real-kernel row, the fastest kept

    def table(self, study: str = "variants") -> pd.DataFrame:
        return self.rows[self.rows["study"] == study].drop(columns="study").reset_index(drop=True)


def _slug(observer: str) -> str:
    return observer.replace("-", "_")


def _clamped_sizes(sizes: Sequence[int], available: int, calibration_tokens: int) -> list[int]:
    return sorted({min(s, available) for s in sizes} | {calibration_tokens})


def plan(test_ids: torch.Tensor, train_ids: torch.Tensor, max_tokens: int, calibration_tokens: int,
         sizes: Sequence[int], observers: Sequence[str]) -> tuple[int, int, list[int], list[str], list[str]]:
    """The checked request: test tokens, calibration tokens and sizes as the splits allow, the observers, notes."""
    max_tokens = check_tokens(max_tokens, "the test tokens", "--max-tokens")
    calibration_tokens = check_tokens(calibration_tokens, "the calibration tokens", "--calibration-tokens")
    sizes = [check_tokens(s, "a calibration size", "--sizes 100,") for s in sizes]
    observers = [check_observer(o) for o in observers]
    if not observers:
        raise WlmError(f"name at least one observer ({', '.join(OBSERVERS)})")
    if len(train_ids) < 2:
        raise WlmError("the training split is empty; calibration reads it")
    notes = []
    _, note = limit_tokens(test_ids, max_tokens)
    if note:
        notes.append(note)
    tokens = min(max_tokens, len(test_ids))
    if calibration_tokens > len(train_ids):
        notes.append(f"calibration tokens {calibration_tokens:,} are more than the training split's "
                     f"{len(train_ids):,}; calibrated on all of them")
    calibration_tokens = min(calibration_tokens, len(train_ids))
    if any(s > len(train_ids) for s in sizes):
        notes.append(f"calibration sizes above the training split's {len(train_ids):,} tokens use all of it")
    return tokens, calibration_tokens, _clamped_sizes(sizes, len(train_ids), calibration_tokens), list(
        dict.fromkeys(observers)), notes


def check_rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or not 1 <= rounds <= 10:
        raise WlmError(f"rounds must be a whole number from 1 to 10, got {rounds!r}; e.g. --rounds 3")
    return int(rounds)


def _stage(progress: Progress | None, label: str):
    return None if progress is None else (lambda done, total: progress(label, done, total))


def stage_labels(observers: Sequence[str], real_decoder: bool = True) -> list[str]:
    """The stages ``study`` reports progress under, in order."""
    labels = ["calibrating on train", "calibrating on test", "float", DYNAMIC]
    if real_decoder:
        labels += [f"static {o}, decoder only" for o in observers]
    return labels + ["simulated"]


@torch.no_grad()
def study(model: nn.Module, test_ids: torch.Tensor, train_ids: torch.Tensor, *,
          max_tokens: int = DEFAULT_STATIC_TOKENS, calibration_tokens: int = DEFAULT_CALIBRATION_TOKENS,
          sizes: Sequence[int] = CALIBRATION_SIZES, observers: Sequence[str] = OBSERVERS, real_decoder: bool = True,
          threads: int | None = 1, rounds: int = 1, quantized: nn.Module | None = None,
          progress: Progress | None = None) -> StaticStudy:
    """Static against dynamic on the first ``max_tokens`` test tokens.

    Rows (``StaticStudy.rows``): study "variants": the float model, the real dynamic variant (the tutorial's,
    scored by ``evaluate``: the ``compare`` command's ``tutorial`` row), the same simulated, each observer's
    static variant calibrated on ``calibration_tokens`` training tokens (simulated), and each observer's static
    decoder on torch's real kernels with the LSTM left dynamic; "calibration size": each observer's static
    variant at each of ``sizes``; "calibration text": calibrated on the training split against on the test tokens
    themselves. The rows on real kernels are timed ``rounds`` times, interleaved, keeping each one's fastest.
    ``clipped_share`` is the share of the activations arriving at the quantized matmuls during the
    evaluation that fell outside the fixed range (and were clipped, for the simulated rows)."""
    rounds = check_rounds(rounds)
    tokens, calibration_tokens, sizes, observers, notes = plan(test_ids, train_ids, max_tokens, calibration_tokens,
                                                               sizes, observers)
    test = test_ids[:tokens]
    if quantized is None:
        with quantized_engine(packing_engine()):  # packed weights are their engine's for good (wlm.qengine)
            quantized = quantize(model, preset("tutorial"))
    with num_threads(threads):
        decoders = {o: prepare_static_decoder(model, o) for o in observers} if real_decoder else {}

        def feed(block: torch.Tensor) -> None:
            for decoder in decoders.values():
                decoder(block)

        trained = calibrate(model, train_ids, sizes, observers=observers, text="train",
                            progress=_stage(progress, "calibrating on train"),
                            decoder_feed=(calibration_tokens, feed) if decoders else None)
        itself = calibrate(model, test, [tokens], observers=observers, text="test",
                           progress=_stage(progress, "calibrating on test"))
        with quantized_engine(packing_engine()):  # whatever engine another block of the process holds now
            for decoder in decoders.values():
                convert_static_decoder(decoder)
        # the rows on real kernels are timed: each is evaluated ``rounds`` times, interleaved, and keeps its fastest
        timed = [("float", model, None)] + [(DYNAMIC, quantized, None)] + [
            (f"static {o}, decoder only", with_static_decoder(quantized, decoder), _ClipCount(decoder))
            for o, decoder in decoders.items()]
        best: dict[str, EvalResult] = {}
        for round_ in range(rounds):
            for label, candidate, count in timed:
                handle = candidate.decoder.register_forward_pre_hook(count) if count is not None and round_ == 0 \
                    else None
                try:
                    result = evaluate(candidate, test, progress=_stage(progress, label if rounds == 1 else
                                                                       f"{label} (round {round_ + 1} of {rounds})"))
                finally:
                    if handle is not None:
                        handle.remove()
                if label not in best or result.seconds < best[label].seconds:
                    best[label] = result
        float_result, dynamic_result = best["float"], best[DYNAMIC]
        values = activation_values(model, float_result.tokens)
        real_rows = [(label.removeprefix("static ").removesuffix(", decoder only"), best[label], count.clipped)
                     for label, _, count in timed[2:]]
        calibrations = [trained[(o, s)] for o in observers for s in sizes] + [itself[(o, tokens)] for o in observers]
        sim = SimulatedModel(model, [None] + [c.qparams for c in calibrations], quantized)
        scored = score(sim, test, progress=_stage(progress, "simulated"))

    base = float_result.loss

    def row(study_name, activations, kernels, calibration, cal_tokens, result, clipped_share, timed):
        return {"study": study_name, "activations": activations, "kernels": kernels, "calibration": calibration,
                "calibration_tokens": cal_tokens, "loss": result.loss, "delta_loss": result.loss - base,
                "clipped_share": clipped_share, "tokens": result.tokens,
                "seconds": result.seconds if timed else math.nan,
                "tokens_per_s": result.tokens_per_s if timed else math.nan}

    by_calibration = dict(zip([(c.observer, c.text, c.tokens) for c in calibrations], scored[1:]))
    rows = [row("variants", "float", KERNELS_FLOAT, "", 0, float_result, 0.0, True),
            row("variants", DYNAMIC, KERNELS_REAL, "", 0, dynamic_result, 0.0, True),
            row("variants", DYNAMIC_SIMULATED, KERNELS_SIMULATED, "", 0, scored[0].result, scored[0].clipped_share,
                False)]
    for o in observers:
        done = by_calibration[(o, "train", calibration_tokens)]
        rows.append(row("variants", f"static {o}", KERNELS_SIMULATED, "train", calibration_tokens, done.result,
                        done.clipped_share, False))
    for o, result, clipped in real_rows:
        rows.append(row("variants", f"static {o}, decoder only", KERNELS_REAL, "train", calibration_tokens, result,
                        clipped / values, True))
    for o in observers:
        for s in sizes:
            done = by_calibration[(o, "train", s)]
            rows.append(row("calibration size", f"static {o}", KERNELS_SIMULATED, "train", s, done.result,
                            done.clipped_share, False))
    for o in observers:
        for text, cal_tokens in (("train", calibration_tokens), ("test", tokens)):
            done = by_calibration[(o, text, cal_tokens)]
            rows.append(row("calibration text", f"static {o}", KERNELS_SIMULATED, text, cal_tokens, done.result,
                            done.clipped_share, False))
    table = pd.DataFrame(rows, columns=ROW_COLUMNS)
    row_of = {(c.observer, c.text, c.tokens): v + 1 for v, c in enumerate(calibrations)}  # row 0: dynamic
    main = {o: (trained[(o, calibration_tokens)], row_of[(o, "train", calibration_tokens)]) for o in observers}
    points, scales = _point_tables(sim, main)
    return StaticStudy(table, points, scales, tokens, calibration_tokens, tuple(sizes), tuple(observers),
                       tuple(notes), rounds)


def _point_tables(sim: SimulatedModel, main: dict[str, tuple[Calibration, int]]) -> tuple[pd.DataFrame,
                                                                                          pd.DataFrame]:
    """Per point, the dynamic run's run-time ranges and scales against each main calibration's fixed range."""
    rows, scales = [], []
    for point in sim.points:
        at, lows, highs = sim.ranges(point)
        low, high = lows[:, 0], highs[:, 0]  # row 0: the dynamic run
        # An all-zero input (the state before the first word) gets scale 0.1 (any scale represents it): left out
        # of the run-time scales.
        nonzero = (low != 0) | (high != 0)
        scale = np.array([runtime_qparams(float(a), float(b))[0] for a, b in zip(low[nonzero], high[nonzero])])
        scales.append(pd.DataFrame({"point": point, "position": at[nonzero], "low": low[nonzero],
                                    "high": high[nonzero], "scale": scale}))
        entry = {"point": point, "input": point_label(point), "calls": len(at),
                 "runtime_low": float(low.min()) if len(low) else math.nan,
                 "runtime_high": float(high.max()) if len(high) else math.nan,
                 "runtime_scale_min": float(scale.min()) if len(scale) else math.nan,
                 "runtime_scale_median": float(np.median(scale)) if len(scale) else math.nan,
                 "runtime_scale_max": float(scale.max()) if len(scale) else math.nan}
        for o, (calibration, v) in main.items():
            lo, hi = calibration.bounds(point)
            slug = _slug(o)
            entry[f"{slug}_low"], entry[f"{slug}_high"] = lo, hi
            entry[f"{slug}_scale"] = calibration.qparams[point][0]
            entry[f"{slug}_zero_point"] = calibration.qparams[point][1]
            # inputs of the dynamic run with a value the fixed pair would clip (more than half a step past its range),
            # and the values this variant clipped here in its own run
            step = calibration.qparams[point][0] / 2
            entry[f"{slug}_inputs_outside"] = (float(np.mean((low < lo - step) | (high > hi + step))) if len(low)
                                               else 0.0)
            entry[f"{slug}_clipped_share"] = float(sim.clipped(point)[v]) / max(sim.values(point), 1)
        rows.append(entry)
    return pd.DataFrame(rows), pd.concat(scales, ignore_index=True)


def point_column_names(observers: Sequence[str]) -> dict[str, str]:
    """Plain names of the per-point table's columns."""
    names = {k: COLUMN_NAMES[k] for k in ("point", "input", "calls", "runtime_low", "runtime_high",
                                          "runtime_scale_min", "runtime_scale_median", "runtime_scale_max")}
    for o in observers:
        slug = _slug(o)
        names.update({f"{slug}_low": f"{o} low", f"{slug}_high": f"{o} high", f"{slug}_scale": f"{o} scale",
                      f"{slug}_zero_point": f"{o} zero point",
                      f"{slug}_inputs_outside": f"{o}: inputs it would clip",
                      f"{slug}_clipped_share": f"{o}: clipped"})
    return names


def display_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns=COLUMN_NAMES)


def share_text(share: float) -> str:
    """A share of activations for people: '0 %', '0.0071 %', '1.2 %'."""
    if share == 0:
        return "0 %"
    return f"{100 * share:.2g} %" if share < 0.01 else f"{100 * share:.1f} %"


def readable_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows for people (the page's table, the CLI's markdown): plain column names, losses to 4 places, shares in
    per cent, '—' where a row has no calibration or no timing (a simulated row's speed means nothing)."""
    def dash(x, fmt):
        return "—" if x != x else fmt.format(x)

    shown = pd.DataFrame({
        "activations": table["activations"], "kernels": table["kernels"],
        "calibration": table["calibration"].replace("", "—"),
        "calibration_tokens": table["calibration_tokens"].map(lambda n: f"{int(n):,}" if n else "—"),
        "loss": table["loss"].map("{:.4f}".format), "delta_loss": table["delta_loss"].map("{:+.4f}".format),
        "clipped_share": table["clipped_share"].map(share_text), "tokens": table["tokens"].map("{:,}".format),
        "seconds": table["seconds"].map(lambda x: dash(x, "{:.2f}")),
        "tokens_per_s": table["tokens_per_s"].map(lambda x: dash(x, "{:,.0f}"))})
    return display_rows(shown)


# --- how long it will take ------------------------------------------------------------------------------------

@torch.no_grad()
def estimate_seconds(model: nn.Module, test_ids: torch.Tensor, train_ids: torch.Tensor, *,
                     max_tokens: int = DEFAULT_STATIC_TOKENS, calibration_tokens: int = DEFAULT_CALIBRATION_TOKENS,
                     sizes: Sequence[int] = CALIBRATION_SIZES, observers: Sequence[str] = OBSERVERS,
                     real_decoder: bool = True, threads: int | None = 1, quantized: nn.Module | None = None,
                     probe_tokens: int = 50) -> dict[str, float]:
    """About how long each stage of ``study`` takes here ({stage: seconds}, in ``stage_labels``' order), from a
    short timed probe of each on ``probe_tokens`` tokens, scaled up: calibration (its cost per token after the
    first block, so the observers' start-up is not scaled up), the float model, the int8 variant and the
    simulated batch."""
    tokens, calibration_tokens, sizes, observers, _ = plan(test_ids, train_ids, max_tokens, calibration_tokens,
                                                           sizes, observers)
    probe = max(2, min(probe_tokens, tokens))
    calibration_probe = max(3, min(4 * probe_tokens, len(train_ids)))
    with num_threads(threads):
        start = time.perf_counter()
        quantized = quantize(model, preset("tutorial")) if quantized is None else quantized
        quantized_at = time.perf_counter()
        marks: dict[int, float] = {}
        calibrate(model, train_ids, [calibration_probe // 4 + 1, calibration_probe], observers=observers,
                  progress=lambda done, total: marks.setdefault(done, time.perf_counter()))
        calibrated = time.perf_counter()
        evaluate(model, test_ids, max_tokens=probe)
        floated = time.perf_counter()
        evaluate(quantized, test_ids, max_tokens=probe)
        dynamic = time.perf_counter()
        count = 1 + len(observers) * (len(sizes) + 1)
        dummy = {p: (0.01, 64) for p in input_points(model)}
        sim = SimulatedModel(model, [None] + [dummy] * (count - 1), quantized)
        built = time.perf_counter()
        score(sim, test_ids, max_tokens=probe)
        simulated = time.perf_counter()
    first = min(marks)  # tokens read by the first chunk, and when
    later = (calibrated - marks[first]) / max(calibration_probe - 1 - first, 1)
    per = {"calibrate": later, "float": (floated - calibrated) / probe, "dynamic": (dynamic - floated) / probe,
           "simulated": (simulated - built) / probe}
    seconds = {"calibrating on train": per["calibrate"] * sizes[-1] + (quantized_at - start),
               "calibrating on test": per["calibrate"] * tokens,
               "float": per["float"] * tokens, DYNAMIC: per["dynamic"] * tokens}
    if real_decoder:
        # each static decoder's calibration runs the float decoder on the calibration tokens (measured here at
        # about a fifth of the float model's time a token)
        seconds["calibrating on train"] += 0.2 * len(observers) * per["float"] * calibration_tokens
        for o in observers:
            seconds[f"static {o}, decoder only"] = per["dynamic"] * tokens
    seconds["simulated"] = per["simulated"] * tokens + (built - dynamic)
    return seconds


# --- what to notice ---------------------------------------------------------------------------------------------

def _row(table: pd.DataFrame, activations: str, **match):
    rows = table[table["activations"] == activations]
    for key, value in match.items():
        rows = rows[rows[key] == value]
    return None if rows.empty else rows.iloc[0]


def variants_takeaway(found: StaticStudy) -> str:
    """One sentence on the side-by-side table."""
    table = found.table("variants")
    dynamic = _row(table, DYNAMIC)
    parts = [f"Dynamic costs {dynamic['delta_loss']:+.4f} nats against float"]
    for o in found.observers:
        static = _row(table, f"static {o}")
        parts.append(f"static {o} {static['delta_loss']:+.4f} (clipping {share_text(static['clipped_share'])} of the "
                     "activations)")
    text = "; ".join(parts) + f", with scales fixed from {found.calibration_tokens:,} training tokens."
    simulated = _row(table, DYNAMIC_SIMULATED)
    if simulated is not None:
        gap = abs(simulated["loss"] - dynamic["loss"])
        text += (" The simulated dynamic row reproduces the real one exactly." if gap == 0 else
                 f" The simulated dynamic row is {gap:.2g} nats from the real one.")
    return text


def sizes_takeaway(found: StaticStudy) -> str:
    table = found.table("calibration size")
    dynamic = _row(found.table("variants"), DYNAMIC)
    parts = []
    for o in found.observers:
        rows = table[table["activations"] == f"static {o}"].sort_values("calibration_tokens")
        if rows.empty:
            continue
        first, last = rows.iloc[0], rows.iloc[-1]
        parts.append(f"static {o} goes from {first['loss']:.4f} after {int(first['calibration_tokens']):,} tokens to "
                     f"{last['loss']:.4f} after {int(last['calibration_tokens']):,}")
    base = dynamic["loss"] - dynamic["delta_loss"]
    return "; ".join(parts) + f" (dynamic: {dynamic['loss']:.4f}, float: {base:.4f})."


def text_takeaway(found: StaticStudy) -> str:
    table = found.table("calibration text")
    parts = []
    for o in found.observers:
        train = _row(table, f"static {o}", calibration="train")
        test = _row(table, f"static {o}", calibration="test")
        parts.append(f"static {o}: {train['loss']:.4f} calibrated on the training text, {test['loss']:.4f} on the "
                     f"test tokens themselves (clipping {share_text(train['clipped_share'])} and "
                     f"{share_text(test['clipped_share'])})")
    return "; ".join(parts) + "."


def scales_takeaway(found: StaticStudy, point: str) -> str:
    """One sentence on one point's run-time scales against its fixed ones."""
    entry = found.points.set_index("point").loc[point]
    median = entry["runtime_scale_median"]
    text = (f"At {point_label(point)} dynamic quantization picked {int(entry['calls']):,} scales from "
            f"{entry['runtime_scale_min']:.3g} to {entry['runtime_scale_max']:.3g} (median {median:.3g})")
    fixed = []
    for o in found.observers:
        slug = _slug(o)
        scale = entry[f"{slug}_scale"]
        fixed.append(f"{o} fixed {scale:.3g} ({scale / median:.2g}× the median; "
                     f"{share_text(entry[f'{slug}_inputs_outside'])} of the inputs hold a value it would clip)")
    return text + "; " + ", ".join(fixed) + "."


def notice(found: StaticStudy) -> list[str]:
    """What to notice, computed from the numbers."""
    table = found.table("variants")
    dynamic = _row(table, DYNAMIC)
    points = found.points.set_index("point")
    lines = []
    for o in found.observers:
        static = _row(table, f"static {o}")
        slug = _slug(o)
        worst = points[f"{slug}_clipped_share"].idxmax()
        where = (f"it clips most at {point_label(worst)} ({share_text(points.loc[worst, f'{slug}_clipped_share'])} "
                 "of the values there)" if points.loc[worst, f"{slug}_clipped_share"] > 0 else "it clips nothing")
        lines.append(f"Static {o} costs {static['loss'] - dynamic['loss']:+.4f} nats more than dynamic; {where}.")
        ratio = points[f"{slug}_scale"] / points["runtime_scale_median"]
        coarse = ratio.idxmax()
        lines.append(f"Its widest fixed step relative to dynamic's is at {point_label(coarse)}: {ratio[coarse]:.2g}× "
                     "the median run-time scale, so most inputs there are rounded more coarsely than dynamic rounds "
                     "them.")
    for o in found.observers:
        real = _row(table, f"static {o}, decoder only")
        if real is None or not dynamic["tokens_per_s"] > 0:
            continue
        timed = "one timing each" if found.rounds == 1 else f"the best of {found.rounds} timings each"
        lines.append(f"On torch's real kernels the dynamic variant with a static {o} decoder ran at "
                     f"{real['tokens_per_s']:,.0f} tokens/s, the dynamic one at {dynamic['tokens_per_s']:,.0f} "
                     f"({real['tokens_per_s'] / dynamic['tokens_per_s']:.2f}×, {timed}). Its fixed scale spares "
                     "finding each input's min and max; it also rounds its output, the logits, to 8 bits and back "
                     f"(Δ loss {real['delta_loss']:+.4f} against dynamic's {dynamic['delta_loss']:+.4f}).")
    if any(_row(table, f"static {o}, decoder only") is not None for o in found.observers):
        o = found.observers[0]
        entry = points.loc["decoder"]
        scale, zero = entry[f"{_slug(o)}_scale"], entry[f"{_slug(o)}_zero_point"]
        lines.append(f"torch's real static decoder stores its input as quint8 codes 0-255: with {o}'s pair it clips "
                     f"only above {(STORED_QMAX - zero) * scale:.3g} (code 255), not at the calibrated top "
                     f"{(ACTIVATION_QMAX - zero) * scale:.3g} (code 127) where the simulated rows clip, the range the "
                     "observers were set up for.")
    return lines
