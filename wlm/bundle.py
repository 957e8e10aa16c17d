"""The model bundle: a folder with ``model.safetensors`` (the weights), ``vocab.txt`` (one word per
line, in id order) and ``card.json`` (config, training record, measured losses, and the sha256 of
the weights file, checked on every load). Read, written, and made from a training run here.
"""
from __future__ import annotations

import hashlib
import json
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
    path = Path(path)
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
