"""Training the tutorial's architecture: named recipes, probes, resumable runs.

Why the default recipe departs from the seed's is said once, in ``DEPARTS_FROM_SEED``, which a
bundle's card also records.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .corpus import batchify, get_batch
from .errors import WlmError
from .evaluate import evaluate
from .model import LSTMModel, ModelConfig, detach_hidden
from .out_files import write_atomically

DEPARTS_FROM_SEED = (
    "The seed's recipe (pytorch/examples word_language_model: SGD lr 20, clip 0.25, dropout 0.5, PyTorch's "
    "default LSTM init) keeps this 5-layer model on the unigram plateau (validation loss 6.97 after a full epoch): "
    "at initialisation the input-dependent signal shrinks about 4x per LSTM layer. Our recipe departs from it in "
    "four ways: LSTM weights uniform in ±0.3 so the signal survives all five layers; AdamW, whose per-parameter "
    "step size reaches the lower layers despite their tiny gradients; dropout 0.2 instead of 0.5 for a short "
    "schedule; gradient-norm clip 1.0 with a warm-up and cosine learning-rate decay instead of lr/4 on plateaus."
)


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"  # cosine (warm-up, then cosine to lr*final_lr_frac) | plateau (lr/4 when valid stalls)
    warmup_batches: int = 100
    final_lr_frac: float = 0.05
    clip: float = 1.0
    batch_size: int = 20
    bptt: int = 35
    dropout: float = 0.2
    lstm_init: str = "uniform0.3"  # one of LSTM_INITS
    forget_bias: float = 0.0
    sparse_embedding: bool = False  # SparseAdam on the embedding rows a batch touches; AdamW on the rest
    bf16: bool = False  # measured slower than fp32 on CPUs without AMX
    epochs: int = 6

    def to_dict(self) -> dict:
        return asdict(self)


LSTM_INITS = ("default", "uniform0.3", "orthogonal")
EXAMPLES_RECIPE, DEFAULT_RECIPE = "examples", "adamw"
RECIPES = {
    # The seed's: pytorch/examples word_language_model defaults.
    EXAMPLES_RECIPE: Recipe(
        EXAMPLES_RECIPE, optimizer="sgd", lr=20.0, weight_decay=0.0, schedule="plateau", warmup_batches=0,
        clip=0.25, dropout=0.5, lstm_init="default", bf16=False, epochs=5,
    ),
    DEFAULT_RECIPE: Recipe(DEFAULT_RECIPE),
}
# Names a recipe was once known by, still accepted: the seed's recipe was called "tutorial" (the tutorial itself
# trains nothing; it loads a model trained by pytorch/examples).
RECIPE_ALIASES = {"tutorial": EXAMPLES_RECIPE}
TRAIN_SEED = 1111  # pytorch/examples' default seed
LOSS_WINDOW = 100  # batches per logged mean training loss


def init_lstm(rnn: nn.LSTM, how: str, forget_bias: float = 0.0) -> None:
    if how == "default":
        pass
    elif how == "uniform0.3":
        for p in rnn.parameters():
            nn.init.uniform_(p, -0.3, 0.3)
    elif how == "orthogonal":
        h = rnn.hidden_size
        for name, p in rnn.named_parameters():
            if name.startswith("weight_hh"):
                for g in range(4):
                    nn.init.orthogonal_(p.data[g * h : (g + 1) * h])
            elif name.startswith("weight_ih"):
                # Unit gain per gate: keeps the input-driven part of the pre-activations O(1) at every depth.
                nn.init.normal_(p, 0.0, 1.0 / math.sqrt(p.shape[1]))
            else:
                nn.init.zeros_(p)
    else:
        raise WlmError(f"unknown LSTM init {how!r}; choose one of {', '.join(LSTM_INITS)}")
    if forget_bias:
        h = rnn.hidden_size
        for name, p in rnn.named_parameters():
            if name.startswith("bias_ih"):
                p.data[h : 2 * h] = forget_bias


def build_model(ntoken: int, recipe: Recipe, seed: int) -> LSTMModel:
    torch.manual_seed(seed)
    model = LSTMModel(ModelConfig(ntoken=ntoken, dropout=recipe.dropout))
    init_lstm(model.rnn, recipe.lstm_init, recipe.forget_bias)
    return model


def make_optimizers(model: LSTMModel, recipe: Recipe) -> list[torch.optim.Optimizer]:
    """One optimizer, or two when the embedding is sparse (dense optimizers reject sparse gradients)."""
    dense = [p for n, p in model.named_parameters() if not (recipe.sparse_embedding and n.startswith("encoder."))]
    if recipe.optimizer == "sgd":
        optimizers = [torch.optim.SGD(dense, lr=recipe.lr)]
    elif recipe.optimizer == "adamw":
        # fused: one kernel for all parameters, ~4x less optimizer time than foreach on CPU.
        optimizers = [torch.optim.AdamW(dense, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)]
    else:
        raise WlmError(f"unknown optimizer {recipe.optimizer!r}; choose adamw or sgd")
    if recipe.sparse_embedding:
        model.encoder.sparse = True
        optimizers.append(torch.optim.SparseAdam([model.encoder.weight], lr=recipe.lr))
    return optimizers


def scheduled_lr(recipe: Recipe, step: int, total_steps: int, plateau_lr: float) -> float:
    if recipe.schedule == "plateau":
        return plateau_lr
    if step < recipe.warmup_batches:
        return recipe.lr * (step + 1) / recipe.warmup_batches
    progress = min(1.0, (step - recipe.warmup_batches) / max(1, total_steps - recipe.warmup_batches))
    floor = recipe.lr * recipe.final_lr_frac
    return floor + (recipe.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def validation_loss(model: LSTMModel, data: torch.Tensor, bsz: int = 10, bptt: int = 35) -> float:
    """Mean loss per token on ``data``, by ``evaluate``'s loop. Unlike the tutorial's evaluation (batch 1,
    chunks of 25) it reads 10 streams at once in the recipe's chunk length: it only picks the best epoch,
    and is that much faster."""
    return evaluate(model, data, batch_size=bsz, bptt=bptt).loss


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped."""

    epoch: int = 0
    batch: int = 0  # index of the next batch within the epoch
    step: int = 0  # batches done in all
    plateau_lr: float = 0.0
    best_valid: float = float("inf")
    history: list = field(default_factory=list)  # one dict per finished epoch
    windows: list = field(default_factory=list)  # (step, mean train loss) per window
    seconds: float = 0.0


def save_resume(path: Path, model, optimizers, state: TrainState, hidden, recipe: Recipe, extra: dict) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "state": asdict(state),
        "hidden": hidden,
        "rng": torch.get_rng_state(),
        "recipe": recipe.to_dict(),
        "extra": extra,
    }
    write_atomically(path, lambda partial: torch.save(payload, partial))


def load_resume(path: Path) -> dict:
    if not path.is_file():
        raise WlmError(f"resume checkpoint {path} does not exist; "
                       "start without --resume or point --out at the run's folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure here means the file is unusable
        raise WlmError(f"resume checkpoint {path} cannot be read ({exc}); delete it and start again") from None


def train(
    train_ids: torch.Tensor,
    valid_ids: torch.Tensor,
    ntoken: int,
    recipe: Recipe,
    out_dir: Path,
    *,
    seed: int = TRAIN_SEED,
    max_tokens: int | None = None,
    max_batches: int | None = None,
    time_limit_s: float | None = None,
    resume: bool = False,
    save_every_s: float = 600.0,
    window: int = LOSS_WINDOW,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[LSTMModel, TrainState]:
    """Train; the best model by validation loss is kept at ``out_dir/best.pt`` (a plain state_dict).

    ``max_batches`` stops early (probe mode), ``time_limit_s`` stops at the next batch
    boundary after that many seconds of training, saving a resumable checkpoint.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / "resume.pt"
    if max_tokens is not None:
        train_ids = train_ids[:max_tokens]
    source = batchify(train_ids, recipe.batch_size)
    batches_per_epoch = math.ceil((source.size(0) - 1) / recipe.bptt)
    total_steps = batches_per_epoch * recipe.epochs

    model = build_model(ntoken, recipe, seed)
    optimizers = make_optimizers(model, recipe)
    state = TrainState(plateau_lr=recipe.lr)
    hidden = model.init_hidden(recipe.batch_size)
    if resume:
        state, hidden = _restore(load_resume(resume_path), model, optimizers)
        log(f"resumed at epoch {state.epoch + 1}, batch {state.batch}, step {state.step}")
    else:
        torch.manual_seed(seed)

    def save() -> None:
        save_resume(resume_path, model, optimizers, state, hidden, recipe, {"seed": seed, "ntoken": ntoken})

    windows = _Windows(window, log)
    last_save = time.monotonic()
    started = time.monotonic() - state.seconds
    with _CtrlC() as ctrl_c, _EpochBar(progress) as bar:
        while state.epoch < recipe.epochs:
            model.train()
            bar.open(batches_per_epoch, state)
            while state.batch < batches_per_epoch:
                x, y = get_batch(source, state.batch * recipe.bptt, recipe.bptt)
                lr = scheduled_lr(recipe, state.step, total_steps, state.plateau_lr)
                loss, hidden = _train_step(model, optimizers, recipe, x, y, hidden, lr)
                state.batch += 1
                state.step += 1
                bar.update(loss, lr, y.numel())
                windows.add(state, loss, y.numel(), lr)
                state.seconds = time.monotonic() - started
                why = _stop_reason(ctrl_c.pressed, state, time_limit_s, max_batches)
                if why or time.monotonic() - last_save >= save_every_s:
                    save()
                    last_save = time.monotonic()
                if why:
                    log(f"{why}: saved {resume_path} at step {state.step}")
                    if why == "time limit":
                        # The schedule was cut short: the model as it stands may still be the best one.
                        _end_epoch(model, valid_ids, recipe, state, out_dir, lr, partial=True, log=log)
                        save()
                    return model, state
            bar.close()
            _end_epoch(model, valid_ids, recipe, state, out_dir, lr, partial=False, log=log)
            state.epoch += 1
            state.batch = 0
            save()
            last_save = time.monotonic()
    return model, state


def _restore(saved: dict, model: LSTMModel, optimizers: list[torch.optim.Optimizer]):
    """Load a resume checkpoint into ``model`` and ``optimizers``; returns its state and hidden state."""
    model.load_state_dict(saved["model"])
    for optimizer, saved_state in zip(optimizers, saved["optimizers"]):
        optimizer.load_state_dict(saved_state)
    torch.set_rng_state(saved["rng"])
    return TrainState(**saved["state"]), tuple(saved["hidden"])


def _train_step(model: LSTMModel, optimizers: list[torch.optim.Optimizer], recipe: Recipe, x: torch.Tensor,
                y: torch.Tensor, hidden, lr: float) -> tuple[float, tuple]:
    """One batch: forward, backward, clip, step at ``lr``. Returns the loss and the hidden state to carry."""
    dense_params = optimizers[0].param_groups[0]["params"]
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
    hidden = detach_hidden(hidden)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
        logits, hidden = model(x, hidden)
    loss = nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), y)
    loss.backward()
    nn.utils.clip_grad_norm_(dense_params, recipe.clip)
    for optimizer in optimizers:
        optimizer.step()
    return loss.item(), tuple(h.float() for h in hidden)


def _stop_reason(interrupted: bool, state: TrainState, time_limit_s: float | None, max_batches: int | None) -> str:
    """Why training stops after this batch ('' to go on)."""
    if interrupted:
        return "interrupted"
    if time_limit_s is not None and state.seconds >= time_limit_s:
        return "time limit"
    if max_batches is not None and state.step >= max_batches:
        return "probe finished"
    return ""


class _CtrlC:
    """While active (in the main thread), Ctrl-C sets ``pressed`` instead of raising: the batch finishes and
    is saved."""

    def __enter__(self) -> "_CtrlC":
        self.pressed = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        self.pressed = True

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _EpochBar:
    """A tqdm bar per epoch with the last batch's loss, lr and speed (nothing when ``enabled`` is False)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __enter__(self) -> "_EpochBar":
        return self

    def open(self, total: int, state: TrainState) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=state.batch, desc=f"epoch {state.epoch + 1}", unit="batch",
                            dynamic_ncols=True, leave=False)

    def update(self, loss: float, lr: float, tokens: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            tps = self.bar.format_dict["rate"] or 0.0
            self.bar.set_postfix(loss=f"{loss:.2f}", ppl=f"{math.exp(min(loss, 20)):.0f}", lr=f"{lr:.2g}",
                                 tok_s=f"{tps * tokens:,.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __exit__(self, *exc) -> None:
        self.close()


class _Windows:
    """The mean training loss of each window of ``size`` batches: logged, and kept in ``state.windows``."""

    def __init__(self, size: int, log: Callable[[str], None]):
        self.size, self.log = size, log
        self._reset()

    def _reset(self) -> None:
        self.loss, self.batches, self.tokens, self.start = 0.0, 0, 0, time.monotonic()

    def add(self, state: TrainState, loss: float, tokens: int, lr: float) -> None:
        self.loss += loss
        self.batches += 1
        self.tokens += tokens
        if self.batches == self.size:
            tps = self.tokens / (time.monotonic() - self.start)
            mean = self.loss / self.batches
            state.windows.append((state.step, mean))
            self.log(f"step {state.step:6d}  window loss {mean:.3f}  lr {lr:.3g}  {tps:,.0f} tok/s")
            self._reset()


def _end_epoch(model, valid_ids, recipe: Recipe, state: TrainState, out_dir: Path, lr: float, *, partial: bool,
               log: Callable[[str], None]) -> None:
    """Validate, record the epoch, keep the best model, and (for the seed's recipe) cut lr on a plateau."""
    valid = validation_loss(model, valid_ids, bptt=recipe.bptt)
    model.train()
    recent = [loss for step, loss in state.windows if step > state.step - state.batch] or [float("nan")]
    state.history.append({"epoch": state.epoch + 1, "partial": partial, "batches": state.batch,
                          "train_loss": sum(recent) / len(recent), "valid_loss": valid, "lr": lr,
                          "minutes": round(state.seconds / 60, 1)})
    log(f"epoch {state.epoch + 1}{' (cut short)' if partial else ''}: train {sum(recent) / len(recent):.3f}  "
        f"valid {valid:.3f} (ppl {math.exp(valid):.1f})  {state.seconds / 60:.1f} min")
    if valid < state.best_valid:
        state.best_valid = valid
        torch.save(model.state_dict(), out_dir / "best.pt")
    elif recipe.schedule == "plateau":
        state.plateau_lr /= 4.0


def is_examples_recipe(recipe: dict) -> bool:
    """Whether a recipe as recorded (``Recipe.to_dict()``, e.g. in a run's resume checkpoint) is the seed's, the
    pytorch/examples one, whatever name it was saved under."""
    settings = {k: v for k, v in recipe.items() if k != "name"}
    return settings == {k: v for k, v in RECIPES[EXAMPLES_RECIPE].to_dict().items() if k != "name"}


def recipe_with(name: str, **overrides) -> Recipe:
    name = RECIPE_ALIASES.get(name, name)
    if name not in RECIPES:
        raise WlmError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    clean = {k: v for k, v in overrides.items() if v is not None}
    return replace(RECIPES[name], **clean)
