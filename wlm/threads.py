"""How many threads torch computes with, for the length of a block.

torch keeps a count per thread, and a new thread starts from the last count any thread set. A command runs
one block at a time, so a block restores what it found. A server starts a new thread for every page run:
a block that starts while another session's block runs at 2 threads finds 2, and restoring it would leave
2 for every page run after it. A server therefore names a resting count (``rest_at``), and every block then
returns to it, whatever it found.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

from .errors import WlmError

_resting: int | None = None  # the count blocks return to; None: what each block found
_resting_lock = threading.Lock()


def _check(n: object) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise WlmError(f"threads must be a whole number of at least 1, got {n!r}")
    return n


def rest_at(n: int) -> None:
    """Make ``n`` the process's resting thread count, and this thread's count. The first call names it: later
    calls (every page run makes one) keep the first count, and only set their own thread to it, which leaves
    a measurement running in another thread at its own count."""
    global _resting
    _check(n)
    with _resting_lock:
        if _resting is None:
            _resting = n
    torch.set_num_threads(_resting)


def resting() -> int | None:
    """The resting count ``rest_at`` set, or None in a process that set none."""
    return _resting


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then return to the resting count if one is set,
    else to the count found."""
    if n is None:
        yield
        return
    _check(n)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(_resting if _resting is not None else previous)


def in_words(n: int) -> str:
    """'1 thread', '2 threads': a count as a sentence says it."""
    return f"{n} thread{'' if n == 1 else 's'}"
