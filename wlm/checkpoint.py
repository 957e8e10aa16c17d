"""Finding and loading a model's weights: a bundle folder, a ``.safetensors`` file, the tutorial's
``.pth`` or an upload, always without running code stored in the file."""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .bundle import BUNDLED_MODEL, WEIGHTS_FILE, load_bundle
from .errors import WlmError
from .model import LoadedModel, check_vocab, model_from_state_dict, random_model


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
        raise WlmError(f"the bundled model is missing ({default_model_path()}); "
                       "pass --checkpoint FILE or --random-init")
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
