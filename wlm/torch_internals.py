"""The few places we reach into torch's private internals, kept together so an upgrade is checked here.

Written against torch 2.13.0 (pinned in requirements.txt). A dynamically quantized ``nn.LSTM`` keeps
its weights in packed script objects (``_all_weight_values``) that only its private ``_weight_bias()``
unpacks and ``set_weight_bias()`` rebuilds; and a model that shares some submodules with another is
made by giving a shallow copy its own ``_modules`` table.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def is_packed_lstm(module: nn.Module) -> bool:
    """Whether ``module`` is a dynamically quantized LSTM (weights in packed script objects)."""
    return hasattr(module, "_weight_bias") and isinstance(getattr(module, "_all_weight_values", None), nn.ModuleList)


def packed_lstm_weights(module: nn.Module) -> dict[str, dict[str, torch.Tensor]] | None:
    """A quantized LSTM's tensors as ``{"weight": {name: tensor}, "bias": {...}}`` under the float LSTM's
    names (``weight_ih_l0`` ...); None for any other module."""
    return module._weight_bias() if is_packed_lstm(module) else None


def set_packed_lstm_weights(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Rebuild a quantized LSTM's packed weights from tensors named as ``packed_lstm_weights`` gives them."""
    module.set_weight_bias(tensors)


def with_children(model: nn.Module, children: dict[str, nn.Module]) -> nn.Module:
    """A shallow copy of ``model`` with its own table of submodules, ``children``; ``model`` is not touched.

    Parameters and buffers of the copy are ``model``'s own tensors, in tables of its own.
    """
    shell = copy.copy(model)
    shell._parameters, shell._buffers = dict(model._parameters), dict(model._buffers)
    shell._modules = dict(children)
    return shell

