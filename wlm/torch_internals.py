"""The few places we reach into torch's private internals, kept together so an upgrade is checked here.

Written against torch 2.13.0 (pinned in requirements.txt). A dynamically quantized ``nn.LSTM`` keeps
its weights in packed script objects (``_all_weight_values``) that only its private ``_weight_bias()``
unpacks and ``set_weight_bias()`` rebuilds; a model that shares some submodules with another is
made by giving a shallow copy its own ``_modules`` table; an embedding is built without its costly
initialisation through ``nn.Embedding``'s private ``_weight`` argument; a state_dict carries each
submodule's version in its private ``_metadata``; and a quantized module's name as ``print(model)``
shows it comes from ``_get_name()``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

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



def uninitialised_embedding(num_embeddings: int, embedding_dim: int) -> nn.Embedding:
    """An ``nn.Embedding`` whose table is allocated (``torch.empty``, on the current default device) but not
    initialised, for weights about to be loaded.

    ``nn.Embedding``'s constructor always draws its normal initialisation unless handed a table through its
    private ``_weight`` argument. For the tutorial's 17 M-entry table that draw is the costly part of building a
    model whose weights are then overwritten, and on the meta device it pulls in the compiler stack.
    """
    return nn.Embedding(num_embeddings, embedding_dim, _weight=torch.empty(num_embeddings, embedding_dim))


def state_dict_versions(model: nn.Module) -> dict[str, dict]:
    """The version record ``model.state_dict()`` carries, ``{submodule prefix: {"version": n, ...}}``.

    torch keeps it in the state_dict's private ``_metadata`` attribute, and ``load_state_dict`` reads it to tell
    how an older module wrote its entries; quantized modules (packed Linear, quantized embeddings) depend on it.
    """
    return dict(getattr(model.state_dict(), "_metadata", {}))


def with_versions(state: dict[str, torch.Tensor], versions: dict[str, dict]) -> OrderedDict:
    """``state`` as a state_dict carrying ``versions`` (keys relative to the module it will be loaded into),
    as ``state_dict_versions`` gives them: ``load_state_dict`` then reads each entry as a module of that version
    wrote it. A plain dict of tensors has no private ``_metadata``, so torch would assume the oldest version."""
    loadable = OrderedDict(state)
    loadable._metadata = versions
    return loadable


def module_display_name(module: nn.Module) -> str:
    """The module's name as ``print(model)`` shows it, e.g. ``DynamicQuantizedLSTM`` for a dynamically quantized
    LSTM whose class is also called ``LSTM``: quantized modules override the private ``_get_name()``."""
    return module._get_name()
