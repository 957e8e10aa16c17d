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
from dataclasses import dataclass, field
from pathlib import Path

import torch
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
        if "GLOBAL" in reason:  # the safe loader refused an object: say so, it is the one thing worth knowing
            raise WlmError(f"checkpoint {path} was refused: it holds Python objects other than tensors, which could "
                           f"run code when loaded ({reason}). Save a plain state_dict with "
                           "torch.save(model.state_dict(), path)") from None
        reason = "it cannot be read: it is not a torch.save file of tensors"
        raise _not_a_checkpoint(path, _plain_kind(path) or reason) from None
    except Exception as exc:  # noqa: BLE001 - whatever the reader trips on, the bytes are not a checkpoint
        reason = f"it cannot be read: it is truncated or not a torch.save file{_brief(exc)}"
        raise _not_a_checkpoint(path, _plain_kind(path) or reason) from None
    if not isinstance(state, dict) or not state:
        raise _not_a_checkpoint(path, f"it holds {_what_it_holds(state)}, not a state_dict (a dict of tensors)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise _not_a_checkpoint(path, "it is a dict but not a state_dict (a dict of names to tensors)")
    return state


_CHECKPOINT_KINDS = ("a checkpoint is a bundle folder (model.safetensors, vocab.txt, card.json), a .safetensors file, "
                    "or a PyTorch state_dict .pth saved with torch.save(model.state_dict(), path)")


def _not_a_checkpoint(path: str | Path, reason: str) -> WlmError:
    """The one-line error for any file or folder that is not a checkpoint: what it is, and what a checkpoint is."""
    return WlmError(f"{path} is not a checkpoint of the LSTM language model: {reason}; {_CHECKPOINT_KINDS}")


def _brief(exc: BaseException) -> str:
    """An exception as a short parenthesised note, or "" when it says nothing a user can act on."""
    if isinstance(exc, EOFError):
        return " (the file ends early)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0].split(". ")[0].rstrip(".") if lines else ""
    if not any(c.isalpha() for c in text):  # e.g. KeyError 101 from an unpickler reading text
        return ""
    return f" ({text if len(text) <= 100 else text[:99] + '…'})"


def _plain_kind(path: Path) -> str:
    """"it is empty" or "it is a text file" when the bytes say so plainly (the usual wrong picks), else ""."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return ""
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < 4096 or exc.start < len(head) - 3:  # binary bytes, not a character cut by the 4 KB read
            return ""
        text = head[:exc.start].decode("utf-8")
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "it is a text file, not saved weights"
    return ""


def _what_it_holds(state: object) -> str:
    if isinstance(state, torch.Tensor):
        return f"a single tensor of shape {tuple(state.shape)}"
    if isinstance(state, dict):
        return "an empty dict"
    return f"a {type(state).__name__}"


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
    present = [needed for needed in (weights, vocab, card_path) if needed.is_file()]
    if path.is_dir() and not present:
        raise _not_a_checkpoint(path, f"it is a folder without {WEIGHTS_FILE}, {VOCAB_FILE} or {CARD_FILE}")
    for needed in (weights, vocab, card_path):
        if needed not in present:
            raise WlmError(f"model bundle {path} is incomplete: {needed.name} is missing "
                           f"(a bundle holds {WEIGHTS_FILE}, {VOCAB_FILE} and {CARD_FILE})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise TypeError(f"it holds a {type(card).__name__}, not an object")
    except Exception as exc:  # noqa: BLE001 - bad bytes, bad JSON or the wrong JSON: the card is unusable
        raise WlmError(f"{card_path} is not a valid bundle card{_brief(exc)}; restore it (git checkout) "
                       "or write the bundle again") from None
    expected = card.get("weights_sha256")
    actual = sha256_file(weights)
    if expected != actual:
        raise WlmError(f"{weights} does not match its card: sha256 is {actual[:12]}…, the card says "
                       f"{str(expected)[:12]}…; the file is damaged or was replaced — restore it (git checkout)")
    model = _model_from_file(weights, _read_safetensors)
    try:
        dictionary = Dictionary(vocab.read_text(encoding="utf-8").split("\n")[:-1])
    except Exception as exc:  # noqa: BLE001 - e.g. a binary file in place of the word list
        raise WlmError(f"{vocab} is not a word list, one word a line in UTF-8{_brief(exc)}; "
                       "restore it (git checkout) or write the bundle again") from None
    check_vocab(model, len(dictionary), f"the bundle's vocabulary {vocab}")
    return LoadedModel(model, str(path), dictionary, card)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, or a header that parses into nonsense
        raise _not_a_checkpoint(path, _plain_kind(path) or f"it cannot be read as safetensors{_brief(exc)}") from None


def _model_from_file(path: Path, read) -> LSTMModel:
    """``read(path)`` (whose errors are already the one-line kind) and the model its tensors form."""
    state = read(path)
    try:
        return model_from_state_dict(state, str(path))
    except WlmError as exc:  # wrong keys or shapes: the message says which; add what a checkpoint is
        raise WlmError(f"{exc}; {_CHECKPOINT_KINDS}") from None
    except Exception as exc:  # noqa: BLE001 - tensors of odd ranks or dtypes: not this model's checkpoint
        raise _not_a_checkpoint(path, f"its tensors do not form the model{_brief(exc)}") from None


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
    read = _read_safetensors if path.suffix == ".safetensors" and path.is_file() else read_state_dict
    return LoadedModel(_model_from_file(path, read), str(path))


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
