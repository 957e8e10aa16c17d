"""The tutorial's LSTM language model, its three parts, and how to rebuild it from a state_dict.

Submodule names match the tutorial checkpoint's keys.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import WlmError
from .torch_internals import uninitialised_embedding

if TYPE_CHECKING:
    from .corpus import Dictionary


@dataclass(frozen=True)
class Part:
    """One of the model's three parts under each of its names."""

    name: str  # what tables, charts and the app call it
    attr: str  # the LSTMModel attribute, which is also its state_dict prefix
    flag: str  # the QuantSpec switch that quantizes it


PARTS = (Part("embedding", "encoder", "embedding"), Part("lstm", "rnn", "lstm"), Part("decoder", "decoder", "linear"))
PART_NAMES = tuple(part.name for part in PARTS)
PART_BY_ATTR = {part.attr: part for part in PARTS}


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
        self.encoder = (nn.Embedding(config.ntoken, config.ninp) if initialise
                        else uninitialised_embedding(config.ntoken, config.ninp))
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


@dataclass
class LoadedModel:
    """A float model as loaded, with where it came from and, when the file brings them, its vocabulary and card."""

    model: LSTMModel
    source: str
    dictionary: Dictionary | None = None
    card: dict = field(default_factory=dict)


REQUIRED_KEYS = ("encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight", "decoder.bias")


def config_from_state_dict(state: dict[str, torch.Tensor], dropout: float = 0.5,
                           source: str = "checkpoint") -> ModelConfig:
    """The architecture implied by the tensor shapes."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise WlmError(f"{source} is not an LSTM language model state_dict: missing {', '.join(missing)}")
    ntoken, ninp = state["encoder.weight"].shape
    nhid = state["rnn.weight_hh_l0"].shape[1]
    nlayers = len([k for k in state if re.fullmatch(r"rnn\.weight_ih_l\d+", k)])
    config = ModelConfig(ntoken=int(ntoken), ninp=int(ninp), nhid=int(nhid), nlayers=nlayers, dropout=dropout)
    expected = _shapes_of(config) if nlayers else {}
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k])})"
             for k, v in state.items() if k in expected and v.shape != expected[k]]
    unknown = sorted(set(state) - set(expected))
    absent = sorted(set(expected) - set(state))
    if wrong or unknown or absent:
        detail = "; ".join(filter(None, [
            "wrong shapes: " + ", ".join(wrong[:3]) if wrong else "",
            "unexpected keys: " + ", ".join(unknown[:3]) if unknown else "",
            "missing keys: " + ", ".join(absent[:3]) if absent else "",
        ]))
        raise WlmError(f"{source} does not fit the LSTM language model ({detail})")
    return config


def _shapes_of(config: ModelConfig) -> dict[str, torch.Size]:
    # On the meta device nothing is allocated or initialised: only the shapes are wanted.
    with torch.device("meta"):
        return {k: v.shape for k, v in LSTMModel(config, initialise=False).state_dict().items()}


def model_from_state_dict(state: dict[str, torch.Tensor], source: str = "checkpoint") -> LSTMModel:
    config = config_from_state_dict(state, source=source)
    # Built on the meta device and handed the loaded tensors (assign=True): initialising 28 M
    # weights only to overwrite them would double the load time.
    with torch.device("meta"):
        model = LSTMModel(config, initialise=False)
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, assign=True)
    return model.eval()


def check_vocab(model: LSTMModel, vocab_size: int, what: str) -> None:
    if model.config.ntoken != vocab_size:
        raise WlmError(f"the model has {model.config.ntoken:,} output words but {what} has {vocab_size:,}; "
                       "use the corpus (or vocabulary) the model was trained on")


def random_model(ntoken: int, seed: int = 0) -> LSTMModel:
    """The tutorial's architecture with freshly initialised weights (for sizes and speed, not for text)."""
    torch.manual_seed(seed)
    return LSTMModel(ModelConfig(ntoken=ntoken)).eval()
