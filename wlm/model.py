"""The tutorial's LSTM language model; submodule names match its checkpoint's keys."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    ntoken: int
    ninp: int = 512
    nhid: int = 256
    nlayers: int = 5
    dropout: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


class LSTMModel(nn.Module):
    """Embedding -> multi-layer LSTM -> Linear over the vocabulary; returns raw logits."""

    def __init__(self, config: ModelConfig, initialise: bool = True):
        """``initialise=False`` is for weights about to be loaded: the embedding table is left
        uninitialised (its default init is the costly one, and on the meta device it pulls in the
        compiler stack) and ``init_weights`` is skipped."""
        super().__init__()
        self.config = config
        self.nhid = config.nhid
        self.nlayers = config.nlayers
        self.drop = nn.Dropout(config.dropout)
        table = None if initialise else torch.empty(config.ntoken, config.ninp)
        self.encoder = nn.Embedding(config.ntoken, config.ninp, _weight=table)
        self.rnn = nn.LSTM(config.ninp, config.nhid, config.nlayers, dropout=config.dropout)
        self.decoder = nn.Linear(config.nhid, config.ntoken)
        if initialise:
            self.init_weights()

    def init_weights(self, initrange: float = 0.1) -> None:
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, bsz: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Always float32: a quantized model has no float parameter to take a dtype from,
        # and dynamically quantized LSTMs expect float hidden states.
        shape = (self.nlayers, bsz, self.nhid)
        return torch.zeros(shape), torch.zeros(shape)


def detach_hidden(hidden):
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(detach_hidden(h) for h in hidden)
