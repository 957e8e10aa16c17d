"""Finding and loading a model's weights: a bundle folder, a ``.safetensors`` file, the tutorial's
``.pth`` or an upload, always without running code stored in the file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .bundle import BUNDLED_MODEL, WEIGHTS_FILE, load_bundle
from .errors import WlmError
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
    read = read_safetensors if path.suffix == ".safetensors" and path.is_file() else read_state_dict
    return LoadedModel(model_from_file(path, read), str(path))


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
