"""The tutorial's evaluation: batch 1, chunks of 25 tokens, hidden state carried across chunks."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from .corpus import batchify, get_batch
from .errors import WlmError
from .model import detach_hidden

BPTT = 25


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


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count afterwards."""
    if n is None:
        yield
        return
    if not isinstance(n, int) or n < 1:
        raise WlmError(f"threads must be a whole number of at least 1, got {n!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
def evaluate(
    model: nn.Module,
    data: torch.Tensor,
    *,
    max_tokens: int | None = None,
    batch_size: int = 1,
    bptt: int = BPTT,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Mean next-word cross-entropy over ``data`` (a 1-D id tensor), as the tutorial computes it.

    ``progress(done, total)`` is called after every chunk with token counts.
    """
    if bptt < 1:
        raise WlmError(f"bptt must be at least 1, got {bptt}")
    data, note = limit_tokens(data, max_tokens)
    source = batchify(data, batch_size)
    model.eval()
    hidden = model.init_hidden(batch_size)
    total_loss = 0.0
    steps = source.size(0) - 1
    start = time.perf_counter()
    for i in range(0, steps, bptt):
        inputs, targets = get_batch(source, i, bptt)
        logits, hidden = model(inputs, hidden)
        hidden = detach_hidden(hidden)
        # Weighted by chunk length, as the tutorial does, so a short last chunk counts less.
        total_loss += len(inputs) * nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets).item()
        if progress is not None:
            progress(min(i + bptt, steps) * batch_size, steps * batch_size)
    seconds = time.perf_counter() - start
    loss = total_loss / steps
    tokens = steps * batch_size
    return EvalResult(loss, math.exp(loss), tokens, seconds, tokens / seconds if seconds > 0 else float("inf"), note)
