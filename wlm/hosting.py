"""Hosted mode: one server shared by strangers (a class opening the demo at once).

Switched on by the environment variable ``WLM_HOSTED``: ``1``, ``true``, ``yes`` or ``on`` (any case)
mean hosted; unset, empty, ``0``, ``false``, ``no`` or ``off`` mean a laptop, where everything stays as
it is. Anything else is refused, so a typo never silently opens the server's files to visitors.

In hosted mode the server opens no file a visitor names (uploads only), one speed or fidelity request
evaluates a bounded number of tokens, and speed measurements queue on a ``TimingLock`` that tells
the waiting page why it waits.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from .errors import WlmError

ENV_VAR = "WLM_HOSTED"
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

# How long one request may hold the server's timing lock, and the token bounds that keep it there.
# Measured on the bundled model (33,278 words, 5 LSTM layers of 256), batch 1, one thread, on an Intel
# Xeon with AVX-512 VNNI, 2 cores shared with other work. Tokens/s on 2,000 test tokens, machine fairly quiet:
#   fp32 1,666 · tutorial 4,803 · int8+emb8 3,074 · int8+emb4 4,892 · float16 2,529 · per-channel 4,532
#   slowest custom setup (emb4 alone) 1,756 · ONNX Runtime fp32 2,474, int8 8,572 · fidelity (both models) 746.
# The heaviest speed request times float, every preset, a custom sidebar setup and both ONNX Runtime
# models on the same tokens: 3.0 ms a token, plus ~3 s of quantizing (and 6 s for the first ONNX export).
# Timed whole on 5,000 tokens with the machine busy (load average 5 on 2 cores), it held the lock for
# 31 s (6.3 ms a token all in), the usual request (float and the tutorial's variant) 10 s, all presets
# 21 s, fidelity 11 s. So 4,000 tokens keep the heaviest request near 25 s on a busy machine.
# The thread sweep (float and one variant at 1 and 2 threads) is the costliest per token: on cores that
# other sessions also use, two threads ran 5-15x slower than one (fp32 198 tokens/s, tutorial 209),
# 11 ms a token for the sweep, 22 s for 2,000 tokens; it gets 1,500 (about 17 s). For the same reason
# hosted measurements use one thread (THREADS): a second thread only fights the other sessions.
LOCK_SECONDS = 30
MAX_TOKENS = 4_000
MAX_SWEEP_TOKENS = 1_500
THREADS = 1

PATH_SOURCE, FALLBACK_SOURCE = "path", "bundled"
WAITING_MESSAGE = "Another visitor's measurement is running; yours starts when it ends."
PATH_NOTE = ("This server does not open files by path, so the link's model was not loaded; showing the "
             "bundled model. Upload a checkpoint in the sidebar to use your own.")


def hosted_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``WLM_HOSTED`` asks for hosted mode (see the module's docstring for the values)."""
    value = environ.get(ENV_VAR, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise WlmError(f"{ENV_VAR}={environ[ENV_VAR]!r} is not understood; use {ENV_VAR}=1 for a shared server "
                   f"or leave it unset (or 0) on a laptop")


@dataclass(frozen=True)
class TokenBudget:
    tokens: int  # what the request may evaluate
    clamped: bool  # whether that is fewer than asked for
    note: str  # what to tell the visitor when clamped, else ""


def clamp_tokens(requested: int, limit: int = MAX_TOKENS) -> TokenBudget:
    """``requested`` tokens, or ``limit`` if that is fewer, saying so."""
    if requested <= limit:
        return TokenBudget(int(requested), False, "")
    return TokenBudget(limit, True, f"this shared server evaluates at most {limit:,} tokens a request "
                                    f"(asked for {requested:,}), so that nobody waits long for a measurement")


@dataclass(frozen=True)
class SourceChoice:
    source: str  # the model source to open
    note: str  # why it differs from the one asked for, else ""


def choose_source(requested: str, hosted: bool) -> SourceChoice:
    """The model source a session opens; a hosted server never opens a path a visitor names."""
    if hosted and requested == PATH_SOURCE:
        return SourceChoice(FALLBACK_SOURCE, PATH_NOTE)
    return SourceChoice(requested, "")


def offered_sources(sources: Mapping[str, str], hosted: bool) -> dict[str, str]:
    """The sources to offer as choices: all of them on a laptop, all but the path source when hosted."""
    return {key: label for key, label in sources.items() if not (hosted and key == PATH_SOURCE)}


class TimingLock:
    """One measurement at a time for the whole server; a caller that must wait is told so first.

    torch's thread count is process-wide and a timing taken while another session computes is wrong,
    so speed measurements queue here. ``hold(on_wait)`` calls ``on_wait()`` once, before blocking,
    only when another caller holds the lock, so the page can say why nothing happens yet.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextlib.contextmanager
    def hold(self, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
        """Hold the lock for the block; yields whether this caller had to wait."""
        waited = not self._lock.acquire(blocking=False)
        if waited:
            if on_wait is not None:
                on_wait()
            self._lock.acquire()
        try:
            yield waited
        finally:
            self._lock.release()


# One per process: torch's thread count and the cores are shared by every session a server runs,
# and a test driving the app in this process can hold it to see the waiting page.
SERVER_LOCK = TimingLock()
