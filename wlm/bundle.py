"""The model bundle: a folder with ``model.safetensors`` (the weights), ``vocab.txt`` (one word per
line, in id order) and ``card.json`` (config, training record, measured losses, and the sha256 of
the weights file, checked on every load). Read (also ahead of its first use, in a background thread),
written, and made from a training run here.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from .assets import ASSETS_DIR, MODEL_FOLDER
from .corpus import Corpus, Dictionary
from .errors import WlmError
from .model import LoadedModel, LSTMModel, check_vocab, model_from_state_dict
from .weights_file import model_from_file, not_a_checkpoint, read_safetensors, read_state_dict, short_reason

BUNDLED_MODEL = ASSETS_DIR / MODEL_FOLDER
WEIGHTS_FILE, VOCAB_FILE, CARD_FILE = "model.safetensors", "vocab.txt", "card.json"
CARD_TOKENS = 5000  # the prefix of the test split whose loss the card records for a quick check


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: str | Path = BUNDLED_MODEL) -> LoadedModel:
    ahead = _take_read_ahead(Path(path))
    return ahead if ahead is not None else _read_bundle(Path(path))


def _read_bundle(path: Path) -> LoadedModel:
    weights, vocab, card_path = path / WEIGHTS_FILE, path / VOCAB_FILE, path / CARD_FILE
    present = [needed for needed in (weights, vocab, card_path) if needed.is_file()]
    if path.is_dir() and not present:
        raise not_a_checkpoint(path, f"it is a folder without {WEIGHTS_FILE}, {VOCAB_FILE} or {CARD_FILE}")
    for needed in (weights, vocab, card_path):
        if needed not in present:
            raise WlmError(f"model bundle {path} is incomplete: {needed.name} is missing "
                           f"(a bundle holds {WEIGHTS_FILE}, {VOCAB_FILE} and {CARD_FILE})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise TypeError(f"it holds a {type(card).__name__}, not an object")
    except Exception as exc:  # bad bytes, bad JSON or the wrong JSON: the card is unusable
        raise WlmError(f"{card_path} is not a valid bundle card{short_reason(exc)}; restore it (git checkout) "
                       "or write the bundle again") from None
    expected = card.get("weights_sha256")
    actual = sha256_file(weights)
    if expected != actual:
        raise WlmError(f"{weights} does not match its card: sha256 is {actual[:12]}…, the card says "
                       f"{str(expected)[:12]}…; the file is damaged or was replaced — restore it (git checkout)")
    model = model_from_file(weights, read_safetensors)
    try:
        dictionary = Dictionary(vocab.read_text(encoding="utf-8").split("\n")[:-1])
    except Exception as exc:  # e.g. a binary file in place of the word list
        raise WlmError(f"{vocab} is not a word list, one word a line in UTF-8{short_reason(exc)}; "
                       "restore it (git checkout) or write the bundle again") from None
    check_vocab(model, len(dictionary), f"the bundle's vocabulary {vocab}")
    # The shipped bundle is named, not located: a page shown to visitors need not print the server's folders.
    source = "the bundled model (assets/wlm-lstm)" if path.resolve() == BUNDLED_MODEL else str(path)
    return LoadedModel(model, source, dictionary, card)


# --- reading a bundle ahead of its first use ---------------------------------------------------------------------
# A fresh server's first page spends a second importing torch, pandas, Altair and the app before it can ask for the
# model; most of reading and quantizing the model is torch's own work, which runs beside those imports on the
# other core. So the page starts that work as soon as torch is in, and the first load takes its result.


class _ReadAhead:
    """A bundle being read, and then quantized by one spec, in a background thread."""

    def __init__(self, path: Path, spec):
        self.path, self.spec = path, spec
        self.stamp = _stamp(path)
        self.loaded: LoadedModel | None = None
        self.parts: dict = {}
        self.taken = False  # a load took the model: later loads read the files again
        self.read = threading.Event()  # the model is read (or reading it failed: ``loaded`` stays None)
        self.done = threading.Event()  # and quantized (or that failed: ``parts`` stays empty)

    def run(self) -> None:
        from .memory import release_memory
        from .quantize import quantize
        from .threads import num_threads

        # One thread, as the page's own work: the other core is importing the page's modules meanwhile.
        with num_threads(1):
            try:
                self.loaded = _read_bundle(self.path)
            except Exception:  # the page's own load says what is wrong, in its own words
                self.loaded = None
            finally:
                self.read.set()
            try:
                if self.loaded is not None and self.spec is not None:
                    quantize(self.loaded.model, self.spec, self.parts)
                    release_memory()  # the temporary copies quantize_dynamic worked on
            except Exception:
                self.parts.clear()  # the page quantizes for itself, and reports what fails
            finally:
                self.done.set()


_READ_AHEAD: dict[Path, _ReadAhead] = {}  # by the bundle folder's resolved path
_READ_AHEAD_LOCK = threading.Lock()


def _stamp(path: Path) -> tuple | None:
    """What tells whether the bundle changed since it was read: its files' sizes and modification times, and
    the card itself (it names the weights' sha256, so a bundle written again within a clock tick differs too)."""
    try:
        weights, vocab = (path / WEIGHTS_FILE).stat(), (path / VOCAB_FILE).stat()
        return weights.st_size, weights.st_mtime_ns, vocab.st_size, vocab.st_mtime_ns, (path / CARD_FILE).read_bytes()
    except OSError:
        return None


def read_ahead(path: str | Path = BUNDLED_MODEL, spec=None) -> threading.Event | None:
    """Start reading the bundle at ``path`` in a background thread, then quantizing it by ``spec`` (a
    ``QuantSpec``; None: only read it). The next ``load_bundle`` of that folder takes this read instead
    of reading the files again (waiting for it if it is still under way), and ``parts_read_ahead`` of
    that model gives the quantized parts, as ``quantize(model, spec, parts)`` lends them. A read that
    failed, or of files that have changed since, is not used: the load reads the files itself. Does
    nothing if the folder is not a complete bundle (returns None) or a read of it is already waiting to be
    taken. Returns the event set once the read and the quantizing are over, whichever way they ended."""
    # What the thread starts with is imported here, before the caller's thread goes on importing.
    from . import memory, quantize, threads  # noqa: F401

    path = Path(path)
    if _stamp(path) is None:
        return None
    key = path.resolve()  # the model is read by the name given, as the load would read it
    with _READ_AHEAD_LOCK:
        if key in _READ_AHEAD and not _READ_AHEAD[key].taken:
            return _READ_AHEAD[key].done
        ahead = _READ_AHEAD[key] = _ReadAhead(path, spec)
    threading.Thread(target=ahead.run, name="wlm-read-ahead", daemon=True).start()
    return ahead.done


def _take_read_ahead(path: Path) -> LoadedModel | None:
    key = path.resolve()
    with _READ_AHEAD_LOCK:
        ahead = _READ_AHEAD.get(key)
    if ahead is None or ahead.taken:
        return None
    ahead.read.wait()
    with _READ_AHEAD_LOCK:
        if ahead.taken or _READ_AHEAD.get(key) is not ahead:
            return None
        if ahead.loaded is None or ahead.stamp != _stamp(path):
            del _READ_AHEAD[key]
            return None
        ahead.taken = True
        return ahead.loaded


def parts_read_ahead(model) -> dict:
    """The parts a read-ahead quantized ``model`` into (see ``read_ahead``), once; else a new empty dict."""
    with _READ_AHEAD_LOCK:
        found = [(path, a) for path, a in _READ_AHEAD.items() if a.loaded is not None and a.loaded.model is model]
    if not found:
        return {}
    path, ahead = found[0]
    ahead.done.wait()
    with _READ_AHEAD_LOCK:
        if _READ_AHEAD.get(path) is not ahead:
            return {}  # another caller got them first
        del _READ_AHEAD[path]
    return ahead.parts


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


def write_bundle(run_dir: Path, corpus: Corpus, out: Path, *, threads: int = 1,
                 log: Callable[[str], None] = print) -> dict:
    """Bundle a training run's best model with a card that records its recipe and measured test losses."""
    # Imported here: reading a bundle needs none of these, and training is slow to import.
    from .evaluate import evaluate
    from .quantize import PRESETS, quantize
    from .threads import num_threads
    from .train import DEPARTS_FROM_SEED, is_examples_recipe, load_resume

    saved = load_resume(run_dir / "resume.pt")
    model = model_from_state_dict(read_state_dict(run_dir / "best.pt"), str(run_dir / "best.pt"))
    state, recipe = saved["state"], saved["recipe"]
    card = {
        "name": "wlm-lstm",
        "architecture": "the tutorial's LSTMModel: embedding 512, LSTM 256 x 5 layers, linear decoder",
        "corpus": "Wikitext-2 (word level), vocabulary in order of first appearance over train, valid, test",
        "recipe": recipe,
        "recipe_departs_from_seed": "" if is_examples_recipe(recipe) else DEPARTS_FROM_SEED,
        "seed": saved["extra"].get("seed"),
        "epochs": state["epoch"],
        "steps": state["step"],
        "history": state["history"],
        "train_wall_minutes": round(state["seconds"] / 60, 1),
        "torch_version": torch.__version__,
    }
    save_bundle(model, corpus.dictionary, out, card)
    # Measure what ships: the float16 weights as loaded back.
    shipped = load_bundle(out)
    evaluation = {}
    with num_threads(threads):
        for name in ("fp32", "tutorial"):
            start = time.perf_counter()
            result = evaluate(quantize(shipped.model, PRESETS[name]), corpus.test)
            evaluation[f"test_loss_{name}"] = round(result.loss, 4)
            log(f"full test split, {name}: loss {result.loss:.4f} (ppl {result.perplexity:.1f}), "
                f"{time.perf_counter() - start:.0f} s")
        evaluation[f"test_loss_fp32_first_{CARD_TOKENS}"] = round(
            evaluate(shipped.model, corpus.test, max_tokens=CARD_TOKENS).loss, 4)
    evaluation["evaluation"] = "the tutorial's: batch 1, bptt 25, hidden state carried, threads=%d" % threads
    return write_card(out, {**shipped.card, **evaluation})
