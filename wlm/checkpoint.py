"""Loading and saving weights: the tutorial's ``.pth`` and the project's bundle.

A bundle is a folder with ``model.safetensors`` (the weights), ``vocab.txt`` (one word per
line, in id order) and ``card.json`` (config, training record, measured losses, and the
sha256 of the weights file, checked on every load).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .corpus import Dictionary
from .errors import WlmError
from .model import LSTMModel, ModelConfig

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_MODEL = ASSETS_DIR / "wlm-lstm"
WEIGHTS_FILE, VOCAB_FILE, CARD_FILE = "model.safetensors", "vocab.txt", "card.json"
REQUIRED_KEYS = ("encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight", "decoder.bias")


@dataclass
class LoadedModel:
    model: LSTMModel
    source: str
    dictionary: Dictionary | None = None
    card: dict = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state_dict from a ``torch.save`` file, loaded without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise WlmError(f"checkpoint {path} does not exist; check the path (the tutorial's file is "
                       "word_language_model_quantize.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(exc)
        if "GLOBAL" not in reason:  # no object was refused: the bytes are not a checkpoint the safe loader reads
            raise WlmError(f"checkpoint {path} cannot be read: it is not a torch.save file of tensors ({reason}). "
                           "Save a plain state_dict with torch.save(model.state_dict(), path)") from None
        raise WlmError(f"checkpoint {path} was refused: it holds Python objects other than tensors, which could "
                       f"run code when loaded ({reason}). Save a plain state_dict with "
                       "torch.save(model.state_dict(), path)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise WlmError(f"checkpoint {path} cannot be read: it is truncated or not a torch.save file ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WlmError(f"checkpoint {path} is not a state_dict (a dict of tensors); save one with "
                       "torch.save(model.state_dict(), path)")
    return state


def _unpickling_reason(exc: Exception) -> str:
    """The line of torch's long weights_only message that says what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")),
                lines[0] if lines else type(exc).__name__)


def config_from_state_dict(state: dict[str, torch.Tensor], dropout: float = 0.5, source: str = "checkpoint") -> ModelConfig:
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


def load_bundle(path: str | Path = BUNDLED_MODEL) -> LoadedModel:
    path = Path(path)
    weights, vocab, card_path = path / WEIGHTS_FILE, path / VOCAB_FILE, path / CARD_FILE
    for needed in (weights, vocab, card_path):
        if not needed.is_file():
            raise WlmError(f"model bundle {path} is incomplete: {needed.name} is missing "
                           f"(a bundle holds {WEIGHTS_FILE}, {VOCAB_FILE} and {CARD_FILE})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WlmError(f"{card_path} is not valid JSON ({exc})") from None
    expected = card.get("weights_sha256")
    actual = sha256_file(weights)
    if expected != actual:
        raise WlmError(f"{weights} does not match its card: sha256 is {actual[:12]}…, the card says "
                       f"{str(expected)[:12]}…; the file is damaged or was replaced — restore it (git checkout)")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise WlmError(f"{weights} cannot be read as safetensors ({exc})") from None
    model = model_from_state_dict(state, source=str(weights))
    dictionary = Dictionary(vocab.read_text(encoding="utf-8").split("\n")[:-1])
    check_vocab(model, len(dictionary), f"the bundle's vocabulary {vocab}")
    return LoadedModel(model, str(path), dictionary, card)


def default_model_path() -> Path:
    """The bundle used when no checkpoint is given: $WLM_MODEL if set, else the one shipped in assets/."""
    return Path(os.environ.get("WLM_MODEL") or BUNDLED_MODEL)


def load_model(path: str | Path | None = None) -> LoadedModel:
    """The default bundle when ``path`` is None; else a bundle folder, a .safetensors file or a .pth state_dict."""
    if path is None:
        return load_bundle(default_model_path())
    path = Path(path)
    if path.is_dir():
        return load_bundle(path)
    if path.suffix == ".safetensors" and path.is_file():
        try:
            state = load_file(path)
        except (SafetensorError, OSError) as exc:
            raise WlmError(f"{path} cannot be read as safetensors ({exc})") from None
        return LoadedModel(model_from_state_dict(state, str(path)), str(path))
    return LoadedModel(model_from_state_dict(read_state_dict(path), str(path)), str(path))


def save_bundle(model: LSTMModel, dictionary: Dictionary, path: str | Path, card: dict,
                dtype: torch.dtype = torch.float16) -> dict:
    """Write a bundle; returns the card as written (with config and weights_sha256 filled in)."""
    check_vocab(model, len(dictionary), "the dictionary")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, path / WEIGHTS_FILE)
    (path / VOCAB_FILE).write_text("".join(w + "\n" for w in dictionary.idx2word), encoding="utf-8")
    return write_card(path, {**card, "config": model.config.to_dict(),
                             "weights_dtype": str(dtype).replace("torch.", ""),
                             "weights_sha256": sha256_file(path / WEIGHTS_FILE)})


def write_card(path: str | Path, card: dict) -> dict:
    (Path(path) / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def random_model(ntoken: int, seed: int = 0) -> LSTMModel:
    """The tutorial's architecture with freshly initialised weights (for sizes and speed, not for text)."""
    torch.manual_seed(seed)
    return LSTMModel(ModelConfig(ntoken=ntoken)).eval()


def open_model(checkpoint: str | Path | None = None, *, random_init: bool = False, seed: int = 0,
               corpus=None) -> LoadedModel:
    """Resolve the model a command or the app works on, with a vocabulary that matches ``corpus``.

    ``random_init`` takes the vocabulary from the corpus; a ``.pth`` file has no vocabulary of its
    own, so it needs the corpus too; a bundle brings its own and must agree with the corpus if one is given.
    """
    if random_init:
        if corpus is None:
            raise WlmError("--random-init takes its vocabulary from the corpus; pass --data DIR or set WLM_DATA_DIR")
        return LoadedModel(random_model(len(corpus.dictionary), seed), f"random init (seed {seed})", corpus.dictionary)
    if checkpoint is None and not (default_model_path() / WEIGHTS_FILE).is_file():
        raise WlmError(f"the bundled model is missing ({default_model_path()}); pass --checkpoint FILE or --random-init")
    loaded = load_model(checkpoint)
    if corpus is not None:
        check_vocab(loaded.model, len(corpus.dictionary), f"the corpus in {corpus.path}")
        if loaded.dictionary is not None and loaded.dictionary != corpus.dictionary:
            raise WlmError(f"the vocabulary of {loaded.source} differs from the corpus in {corpus.path}; "
                           "use the corpus the model was trained on")
        loaded.dictionary = corpus.dictionary
    elif loaded.dictionary is None:
        raise WlmError(f"{loaded.source} has no vocabulary of its own; pass --data DIR (the corpus it was trained on)")
    return loaded


def load_checkpoint_bytes(data: bytes, name: str) -> LoadedModel:
    """Load an uploaded ``.pth`` state_dict or ``.safetensors`` file, never running code inside it."""
    suffix = ".safetensors" if name.lower().endswith(".safetensors") else ".pth"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            loaded = load_model(path)
        except WlmError as exc:
            raise WlmError(str(exc).replace(str(path), repr(name))) from None
    loaded.source = f"upload {name}"
    return loaded
