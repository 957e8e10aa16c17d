"""How many threads torch computes with, for the length of a block."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .errors import WlmError


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
