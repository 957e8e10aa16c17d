"""A quantized model in one file: what the demo's download button writes, and how to read it back.

``torch.save`` of a dynamically quantized model's state_dict holds packed LSTM weights as script
objects, which ``torch.load(weights_only=True)`` refuses; the file written here keeps plain
(quantized) tensors instead, so it loads without running code.
"""
from __future__ import annotations

import io
import os
from typing import BinaryIO

import torch
from torch import nn

from .errors import WlmError
from .model import PARTS, LSTMModel, ModelConfig
from .quantize import QuantSpec, quantize
from .torch_internals import (
    is_packed_lstm,
    packed_lstm_weights,
    set_packed_lstm_weights,
    state_dict_versions,
    with_versions,
)


def portable_state_dict(model: nn.Module) -> dict:
    """The model's state_dict with quantized LSTM weights as plain (quantized) tensors.

    A dynamically quantized LSTM keeps its weights in packed script objects that
    ``torch.load(weights_only=True)`` refuses to read; we store the tensors inside them under the
    float model's names (``rnn.weight_ih_l0`` ...) instead, so the file loads without running code.
    """
    state = model.state_dict()
    packed = packed_lstm_weights(model.rnn)
    if packed is not None:
        state = {k: v for k, v in state.items() if not k.startswith("rnn.")}
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
    versions = state_dict_versions(model)
    entries: dict[str, dict] = {part.attr: {} for part in PARTS}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head not in entries:
            raise WlmError(f"the quantized model file has an unexpected entry {key!r}; it must come from the "
                           "demo's download button")
        entries[head][rest] = value
    parts = {name: with_versions(sub, {k.removeprefix(name).removeprefix("."): v for k, v in versions.items()
                                       if k == name or k.startswith(name + ".")})
             for name, sub in entries.items()}
    try:
        for name, sub in parts.items():
            module = getattr(model, name)
            if is_packed_lstm(module):
                # A quantized LSTM is rebuilt from its tensors (see portable_state_dict).
                set_packed_lstm_weights(module, sub)
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
        "from wlm.quantized_file import load_quantized\n"
        "from wlm.model import ModelConfig\n"
        "from wlm.quantize import QuantSpec\n\n"
        f"model = load_quantized({file_name!r},\n"
        f"                       ModelConfig(ntoken={config.ntoken}, ninp={config.ninp}, nhid={config.nhid}, "
        f"nlayers={config.nlayers}),\n"
        f"                       QuantSpec({fields}))\n"
    )
