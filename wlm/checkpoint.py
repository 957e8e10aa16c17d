"""Finding and loading a model's weights: a bundle folder, a ``.safetensors`` file, the tutorial's
``.pth`` or an upload, always without running code stored in the file."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from .bundle import BUNDLED_MODEL, WEIGHTS_FILE, load_bundle
from .errors import WlmError
from .hosting import PARAMS_ENV, max_upload_bytes
from .model import LoadedModel, check_vocab, random_model
from .weights_file import model_from_file, read_safetensors, read_state_dict


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
    return LoadedModel(model_from_file(path, _reader(path)), str(path))


def _reader(path: Path):
    return read_safetensors if path.suffix == ".safetensors" and path.is_file() else read_state_dict


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


def load_checkpoint_bytes(data: bytes, name: str, *, max_params: int | None = None) -> LoadedModel:
    """Load an uploaded ``.pth`` state_dict or ``.safetensors`` file, never running code inside it.

    ``max_params`` is a shared server's budget (None on a laptop: no bound): a larger upload, or a model of more
    parameters, is refused before its tensors are read."""
    if max_params is not None:
        check_upload_size(len(data), name, max_params)
    suffix = ".safetensors" if _is_safetensors(name) else ".pth"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            loaded = LoadedModel(model_from_file(path, _reader(path), max_params), str(path))
        except WlmError as exc:
            raise WlmError(str(exc).replace(str(path), repr(name))) from None
    loaded.source = f"upload {name}"
    return loaded


def check_upload_size(size: int, name: str, max_params: int) -> None:
    """Refuse an upload larger than float32 weights of ``max_params`` parameters need, before reading it."""
    limit = max_upload_bytes(max_params)
    if size > limit:
        raise WlmError(f"{name!r} is {size / 2**20:,.1f} MB, larger than this shared server accepts: "
                       f"{limit / 2**20:,.1f} MB, float32 weights for its budget of {max_params:,} parameters (set by "
                       f"its operator with {PARAMS_ENV}). Upload a smaller model, or save it as float16")


def upload_limit_mb(max_params: int) -> int:
    """``check_upload_size``'s limit in the megabytes (2**20 bytes) Streamlit's upload settings count, rounded up."""
    return math.ceil(max_upload_bytes(max_params) / 2**20)


def _is_safetensors(name: str) -> bool:
    return name.lower().endswith(".safetensors")
