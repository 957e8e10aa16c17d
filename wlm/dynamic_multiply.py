"""One dynamically quantized matrix multiply, stage by stage, with plain tensor arithmetic.

A dynamically quantized Linear (the decoder, or one LSTM layer's input or recurrent weights)
does five things every time it runs:

1. finds the min and max of the float activation vector that arrives;
2. picks a scale and zero point from them *now* — the "dynamic" part: every input gets its own;
3. rounds the activation to unsigned integers; on x86 (fbgemm) only 0-127, not 0-255
   (``reduce_range``): the AVX2 int8 multiply adds two uint8*int8 products into an int16, and
   two 255*128 products would overflow it, two 127*128 ones cannot;
4. multiplies them with the int8 weights (quantized once, ahead of time, with a scale per
   tensor or per row), adding up in int32;
5. rescales the int32 sums back to float and adds the float bias.

``dynamic_multiply`` reproduces each stage and returns every intermediate; the tests check that
its last stage equals what ``torch.ao``'s quantized modules compute, so the lesson shows what
PyTorch really does on this CPU.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .corpus import Dictionary
from .errors import WlmError
from .fidelity import sqnr_db
from .low_bits import weight_codes

ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 127  # fbgemm's reduce_range: 7 of the 8 bits
DEFAULT_CONTEXT = 500  # words of history before a test position (the LSTM's memory of older words is negligible)
MOVED_WORDS = 10  # next words whose probability moved most, shown for the decoder

_LSTM_LAYER = re.compile(r"rnn\.weight_(ih|hh)_l(\d+)$")


def layer_names(model: nn.Module) -> list[str]:
    """The multiplies one can inspect: each LSTM layer's input and recurrent weights, then the decoder."""
    names = [f"rnn.weight_{kind}_l{k}" for k in range(model.rnn.num_layers) for kind in ("ih", "hh")]
    return names + ["decoder"]


def describe_layer(layer: str) -> str:
    """The layer in words, e.g. 'LSTM layer 2, recurrent weights W_hh (gate pre-activations)'."""
    if layer == "decoder":
        return "decoder (next-word scores)"
    kind, k = _LSTM_LAYER.match(layer).groups()
    what = "input weights W_ih" if kind == "ih" else "recurrent weights W_hh"
    return f"LSTM layer {k}, {what} (gate pre-activations)"


def _check_layer(model: nn.Module, layer: str) -> str:
    if layer == "decoder.weight":
        layer = "decoder"
    if layer not in layer_names(model):
        raise WlmError(f"unknown layer {layer!r}; choose one of {', '.join(layer_names(model))}")
    return layer


def layer_weights(model: nn.Module, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The float weight (out x in) and bias of ``layer`` in the float ``model``."""
    layer = _check_layer(model, layer)
    if layer == "decoder":
        return model.decoder.weight.detach().float(), model.decoder.bias.detach().float()
    kind, k = _LSTM_LAYER.match(layer).groups()
    return (getattr(model.rnn, f"weight_{kind}_l{k}").detach().float(),
            getattr(model.rnn, f"bias_{kind}_l{k}").detach().float())


# --- the real input vector ---------------------------------------------------------------------

@dataclass(frozen=True)
class LayerInput:
    layer: str
    vector: torch.Tensor  # 1-D float: what arrives at the layer's multiply
    word: str  # the word being read when it arrives
    source: str  # where it came from, in words


def _lstm_layer(model: nn.Module, k: int) -> nn.LSTM:
    """Layer ``k`` of the model's LSTM as a one-layer LSTM sharing its weights."""
    rnn = model.rnn
    single = nn.LSTM(rnn.input_size if k == 0 else rnn.hidden_size, rnn.hidden_size, 1)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        setattr(single, f"{name}_l0", nn.Parameter(getattr(rnn, f"{name}_l{k}").detach().float(),
                                                   requires_grad=False))
    return single


@torch.no_grad()
def _arriving(model: nn.Module, layer: str, ids: list[int]) -> torch.Tensor:
    """Run the float model over ``ids`` layer by layer; the vector reaching ``layer`` at the last word."""
    layer = _check_layer(model, layer)
    top = model.rnn.num_layers - 1 if layer == "decoder" else int(_LSTM_LAYER.match(layer).group(2))
    x = model.encoder(torch.tensor(ids, dtype=torch.long).view(-1, 1)).float()  # (T, 1, ninp)
    for k in range(top + 1):
        h0 = torch.zeros(1, 1, model.rnn.hidden_size)
        out, _ = _lstm_layer(model, k)(x, (h0, h0.clone()))
        if k == top and layer != "decoder":
            if layer.endswith(f"ih_l{k}"):
                return x[-1, 0].clone()
            return out[-2, 0].clone() if len(ids) > 1 else h0[0, 0]  # the state left by the word before
        x = out
    return x[-1, 0].clone()


def input_from_prompt(model: nn.Module, dictionary: Dictionary, layer: str, prompt: str) -> LayerInput:
    """The vector arriving at ``layer`` while the float model reads the prompt's last word."""
    ids, _ = dictionary.encode_prompt(prompt)
    if not ids:
        raise WlmError("the prompt is empty; type at least one word")
    layer = _check_layer(model, layer)
    vector = _arriving(model, layer, ids)
    return LayerInput(layer, vector, dictionary.idx2word[ids[-1]], f"last word of the prompt {prompt.strip()!r}")


def input_from_position(model: nn.Module, dictionary: Dictionary, data: torch.Tensor, layer: str, position: int,
                        context: int = DEFAULT_CONTEXT) -> LayerInput:
    """The vector arriving at ``layer`` when the float model reads word ``position`` of ``data``,
    after the ``context`` words before it (from a zero state)."""
    if not 0 <= position < len(data):
        raise WlmError(f"position must be between 0 and {len(data) - 1:,}, got {position}")
    layer = _check_layer(model, layer)
    ids = data[max(0, position - context): position + 1].tolist()
    vector = _arriving(model, layer, ids)
    return LayerInput(layer, vector, dictionary.idx2word[ids[-1]], f"test position {position:,}")


# --- the multiply ------------------------------------------------------------------------------

def activation_qparams(x: torch.Tensor, qmin: int = ACTIVATION_QMIN, qmax: int = ACTIVATION_QMAX) -> tuple[float, int]:
    """Scale and zero point for one activation tensor, as fbgemm picks them at run time.

    The range always includes 0, so that 0.0 (padding, a ReLU's output) is represented exactly.
    """
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / (qmax - qmin)
    if scale == 0 or math.isinf(1.0 / np.float32(scale)):
        scale = 0.1  # an all-zero input: any scale represents it
    zero_point = int(min(max(round(qmin - lo / scale), qmin), qmax))
    return float(np.float32(scale)), zero_point


def quantize_activation(x: torch.Tensor, scale: float, zero_point: int, qmin: int = ACTIVATION_QMIN,
                        qmax: int = ACTIVATION_QMAX) -> torch.Tensor:
    # Multiplying by the float32 inverse (not dividing) is what the kernel does; it decides ties.
    inverse = torch.tensor(1.0 / scale, dtype=torch.float32)
    return torch.clamp(torch.round(x.float() * inverse + zero_point), qmin, qmax).to(torch.int32)


@dataclass(frozen=True)
class DynamicMultiply:
    """Every stage of ``y = W x + b`` as a dynamically quantized layer computes it."""
    layer: str
    word: str
    source: str
    per_channel: bool
    # 1. the float activation
    x: np.ndarray
    x_min: float
    x_max: float
    # 2. its run-time quantization parameters
    qmin: int
    qmax: int
    x_scale: float
    x_zero_point: int
    # 3. the activation as unsigned integers, and what they stand for
    x_codes: np.ndarray  # int32 in qmin..qmax
    x_rounded: np.ndarray  # (codes - zero point) * scale
    # 4. the int8 weights
    w_codes: np.ndarray  # int8, out x in
    w_scales: np.ndarray  # one per tensor, or one per row
    # 5. int32 accumulation and rescale
    accumulator: np.ndarray  # sum_j w_codes[i, j] * x_codes[j]  (int64 here; it fits in int32)
    zero_point_correction: np.ndarray  # x_zero_point * sum_j w_codes[i, j], subtracted
    output_scales: np.ndarray  # x_scale * w_scale per output
    bias: np.ndarray
    output: np.ndarray  # (accumulator - correction) * output_scale + bias
    # 6. against the float layer
    float_output: np.ndarray

    @property
    def error(self) -> np.ndarray:
        return self.output - self.float_output

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(torch.from_numpy(self.float_output), torch.from_numpy(self.output))

    @property
    def int32_headroom(self) -> float:
        """The largest |accumulator| as a fraction of int32's range."""
        return float(np.abs(self.accumulator).max() / 2**31) if self.accumulator.size else 0.0

    def summary(self) -> dict:
        return {"layer": self.layer, "word": self.word, "source": self.source, "per_channel": self.per_channel,
                "inputs": int(self.x.size), "outputs": int(self.output.size),
                "x_min": self.x_min, "x_max": self.x_max, "x_scale": self.x_scale, "x_zero_point": self.x_zero_point,
                "qmin": self.qmin, "qmax": self.qmax,
                "x_rounding_max_error": float(np.abs(self.x_rounded - self.x).max()),
                "w_scale_min": float(self.w_scales.min()), "w_scale_max": float(self.w_scales.max()),
                "accumulator_max_abs": int(np.abs(self.accumulator).max()), "int32_headroom": self.int32_headroom,
                "output_max_abs_error": float(np.abs(self.error).max()), "sqnr_db": self.sqnr_db}

    def activation_table(self) -> pd.DataFrame:
        """One row per input element: float value, its code, and the value the code stands for."""
        return pd.DataFrame({"index": np.arange(self.x.size), "float": self.x, "code": self.x_codes,
                             "dequantized": self.x_rounded, "error": self.x_rounded - self.x})

    def weight_rows(self, rows: int = 4, columns: int = 8) -> pd.DataFrame:
        """The first few rows of int8 weights (first ``columns`` entries) with each row's scale."""
        rows = min(rows, self.w_codes.shape[0])
        table = pd.DataFrame(self.w_codes[:rows, :columns].astype(int),
                             columns=[f"w[:, {j}]" for j in range(min(columns, self.w_codes.shape[1]))])
        scales = self.w_scales if self.per_channel else np.repeat(self.w_scales, rows)
        table.insert(0, "scale", scales[:rows])
        table.insert(0, "row", np.arange(rows))
        return table

    def output_table(self) -> pd.DataFrame:
        """One row per output: the int32 sum, the zero-point term taken from it, the rescaled result, the float
        layer's, the error (``corrected × output_scale + bias`` is ``quantized``)."""
        return pd.DataFrame({"index": np.arange(self.output.size), "accumulator": self.accumulator,
                             "zero_point_term": self.zero_point_correction,
                             "corrected": self.accumulator - self.zero_point_correction,
                             "output_scale": self.output_scales, "bias": self.bias, "quantized": self.output,
                             "float": self.float_output, "error": self.error})


@torch.no_grad()
def dynamic_multiply(model: nn.Module, layer_input: LayerInput, per_channel: bool = False) -> DynamicMultiply:
    """Stage by stage, what the dynamically quantized ``layer_input.layer`` of ``model`` computes for its vector."""
    weight, bias = layer_weights(model, layer_input.layer)
    x = layer_input.vector.detach().float().reshape(-1)
    if x.numel() != weight.shape[1]:
        raise WlmError(f"{layer_input.layer} takes {weight.shape[1]} inputs, the vector has {x.numel()}")
    x_scale, zero_point = activation_qparams(x)
    codes = quantize_activation(x, x_scale, zero_point)
    grid = weight_codes(weight, 8, "per-row" if per_channel else "per-tensor")  # torch's symmetric int8 weights
    w_codes, w_scales = grid.codes, grid.scales.reshape(-1)
    # Integer products summed exactly (float64 holds these integers exactly); the kernel uses int32.
    accumulator = (w_codes.double() @ codes.double()).round().to(torch.int64)
    correction = zero_point * w_codes.to(torch.int64).sum(dim=1)
    output_scales = (torch.tensor(x_scale, dtype=torch.float32) * w_scales.float()).expand(weight.shape[0])
    output = (accumulator - correction).float() * output_scales + bias
    float_output = weight @ x + bias
    return DynamicMultiply(
        layer=layer_input.layer, word=layer_input.word, source=layer_input.source, per_channel=per_channel,
        x=x.numpy(), x_min=float(x.min()), x_max=float(x.max()), qmin=ACTIVATION_QMIN, qmax=ACTIVATION_QMAX,
        x_scale=x_scale, x_zero_point=zero_point, x_codes=codes.numpy(),
        x_rounded=((codes - zero_point).float() * x_scale).numpy(),
        w_codes=w_codes.numpy(), w_scales=w_scales.numpy(), accumulator=accumulator.numpy(),
        zero_point_correction=correction.numpy(), output_scales=output_scales.contiguous().numpy(),
        bias=bias.numpy(), output=output.numpy(), float_output=float_output.numpy())


def moved_scores(result: DynamicMultiply, dictionary: Dictionary, k: int = MOVED_WORDS) -> pd.DataFrame:
    """For the decoder: the ``k`` words whose next-word probability moved most, float vs quantized."""
    if result.layer != "decoder":
        raise WlmError(f"next-word scores come from the decoder, not {result.layer}")
    if len(dictionary) != result.output.size:
        raise WlmError(f"the dictionary has {len(dictionary):,} words but the decoder {result.output.size:,} outputs")
    p_float = torch.softmax(torch.from_numpy(result.float_output).double(), 0)
    p_quant = torch.softmax(torch.from_numpy(result.output).double(), 0)
    moved = (p_quant - p_float).abs()
    top = torch.topk(moved, min(k, moved.numel())).indices
    rank_f = torch.argsort(torch.argsort(p_float, descending=True))
    rank_q = torch.argsort(torch.argsort(p_quant, descending=True))
    return pd.DataFrame({
        "word": [dictionary.idx2word[i] for i in top.tolist()],
        "float_score": result.float_output[top.numpy()], "quantized_score": result.output[top.numpy()],
        "float_prob": p_float[top].numpy(), "quantized_prob": p_quant[top].numpy(),
        "prob_change": (p_quant - p_float)[top].numpy(),
        "float_rank": (rank_f[top] + 1).numpy(), "quantized_rank": (rank_q[top] + 1).numpy()})


def scales_of(inputs: list[LayerInput]) -> pd.DataFrame:
    """The run-time scale and zero point each input gets: the "dynamic" of dynamic quantization."""
    rows = []
    for item in inputs:
        scale, zero = activation_qparams(item.vector.float())
        rows.append({"word": item.word, "source": item.source, "x_min": float(item.vector.min()),
                     "x_max": float(item.vector.max()), "scale": scale, "zero_point": zero})
    return pd.DataFrame(rows)
