"""The tutorial's evaluation: batch 1, chunks of 25 tokens, hidden state carried across chunks.

``chunks`` is the one walk over a token stream that every measurement of a loss shares: ``evaluate``
here, ``fidelity.output_fidelity`` (two models on the same chunks) and ``train.validation_loss``
(``evaluate`` with the training batch and chunk length).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from .corpus import batchify, get_batch
from .errors import WlmError
from .model import detach_hidden

BPTT = 25

# Where an ``evaluate`` called without a ``progress`` of its own reports, inside ``reporting_to``: a page that runs
# code as it shows it (a walkthrough lesson) follows that code's evaluations without a line of it changed.
_REPORTS: ContextVar = ContextVar("wlm_evaluate_reports", default=None)


@contextlib.contextmanager
def reporting_to(progress: Callable[[int, int, int], None]):
    """Within the block (in this thread only), every ``evaluate`` called without ``progress`` calls
    ``progress(n, done, total)`` after each chunk, ``n`` counting the block's evaluations from 0."""
    token = _REPORTS.set((progress, itertools.count()))
    try:
        yield
    finally:
        _REPORTS.reset(token)


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    tokens: int  # tokens scored
    seconds: float
    tokens_per_s: float
    note: str = ""  # e.g. that max_tokens was clamped

    def to_dict(self) -> dict:
        return asdict(self)


def limit_tokens(data: torch.Tensor, max_tokens: int | None) -> tuple[torch.Tensor, str]:
    """A prefix of ``data`` of ``max_tokens`` tokens; asking for more than there is is clamped and said so."""
    if max_tokens is None:
        return data, ""
    if max_tokens < 2:
        raise WlmError(f"max_tokens must be at least 2 (one input and one target), got {max_tokens}")
    if max_tokens > len(data):
        return data, f"max_tokens {max_tokens:,} is more than the split's {len(data):,} tokens; used all of them"
    return data[:max_tokens], ""


@torch.no_grad()
def chunks(models: Sequence[nn.Module], data: torch.Tensor, *, batch_size: int = 1, bptt: int = BPTT,
           progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Feed ``data`` (a 1-D id tensor) to every model in chunks of ``bptt`` steps, each model carrying its
    own hidden state from chunk to chunk; yields (targets, each model's logits) per chunk.

    ``progress(done, total)`` is called after every chunk with token counts.
    """
    if bptt < 1:
        raise WlmError(f"bptt must be at least 1, got {bptt}")
    source = batchify(data, batch_size)
    for model in models:
        model.eval()
    hidden = [model.init_hidden(batch_size) for model in models]
    steps = source.size(0) - 1
    for i in range(0, steps, bptt):
        inputs, targets = get_batch(source, i, bptt)
        logits = []
        for k, model in enumerate(models):
            out, state = model(inputs, hidden[k])
            hidden[k] = detach_hidden(state)
            logits.append(out)
        yield targets, logits
        if progress is not None:
            progress(min(i + bptt, steps) * batch_size, steps * batch_size)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: torch.Tensor,
    *,
    max_tokens: int | None = None,
    batch_size: int = 1,
    bptt: int = BPTT,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Mean next-word cross-entropy per token over ``data`` (a 1-D id tensor), as the tutorial computes it.

    ``progress(done, total)`` is called after every chunk with token counts (without one, inside
    ``reporting_to``, that block's ``progress`` is).
    """
    if progress is None and (watching := _REPORTS.get()) is not None:
        report, count = watching
        progress = functools.partial(report, next(count))
    data, note = limit_tokens(data, max_tokens)
    total_loss, tokens = 0.0, 0
    start = time.perf_counter()
    for targets, (logits,) in chunks([model], data, batch_size=batch_size, bptt=bptt, progress=progress):
        # Each chunk's mean weighted by its size, so a short last chunk counts less.
        total_loss += len(targets) * nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets).item()
        tokens += len(targets)
    seconds = time.perf_counter() - start
    loss = total_loss / tokens
    return EvalResult(loss, math.exp(loss), tokens, seconds, tokens / seconds if seconds > 0 else float("inf"), note)
