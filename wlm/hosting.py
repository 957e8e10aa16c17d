"""Hosted mode: one server shared by strangers (a class opening the demo at once), and every limit it keeps.

Switched on by the environment variable ``WLM_HOSTED``: ``1``, ``true``, ``yes`` or ``on`` (any case)
mean hosted; unset, empty, ``0``, ``false``, ``no`` or ``off`` mean a laptop, where everything stays as
it is. Anything else is refused, so a typo never silently opens the server's files to visitors. A server
that listens on an address other machines can reach runs hosted whatever ``WLM_HOSTED`` says
(``serving_mode``): the laptop mode opens any file a link names.

In hosted mode the server opens no file a visitor names (uploads only), every text, upload and token count
a visitor sends is bounded here (links and scripts bypass a widget's range, so the bound is applied to
the value the server received), speed measurements queue first come, first served on ``SERVER_LOCK``
(one place per session, the page told its place), heavy untimed work shares ``HEAVY_WORK``'s few slots,
and error messages name no server path.

This module is the one home of those limits; the app and the CLI import them from here.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass

from .errors import WlmError

ENV_VAR = "WLM_HOSTED"
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

# Token bounds, measured on the bundled model (33,278 words, 5 LSTM layers of 256), batch 1, one thread, on an
# Intel Xeon with AVX-512 VNNI, 2 cores shared with other work. Tokens/s on 2,000 test tokens, machine fairly quiet:
#   fp32 1,666 · tutorial 4,803 · int8+emb8 3,074 · int8+emb4 4,892 · float16 2,529 · per-channel 4,532
#   slowest custom setup (emb4 alone) 1,756 · ONNX Runtime fp32 2,474, int8 8,572 · fidelity (both models) 746.
# The heaviest speed request times float, every preset, a custom sidebar setup and both ONNX Runtime
# models on the same tokens: 3.0 ms a token, plus ~3 s of quantizing (and 6 s for the first ONNX export).
# Timed whole on 5,000 tokens with the machine busy (load average 5 on 2 cores), it took 31 s (6.3 ms a
# token all in), the usual request (float and the tutorial's variant) 10 s, all presets 21 s, fidelity
# 11 s. So 4,000 tokens keep the heaviest request near 25 s on a busy machine; the walkthrough's timed
# lesson (float and int8 on the same tokens) is bounded the same way.
# The thread sweep (float and one variant at 1 and 2 threads) is the costliest per token: on cores that
# other sessions also use, two threads ran 5-15x slower than one (fp32 198 tokens/s, tutorial 209),
# 11 ms a token for the sweep, 22 s for 2,000 tokens; it gets 1,500 (about 17 s). For the same reason
# hosted measurements use one thread (THREADS): a second thread only fights the other sessions.
# The Fewer bits sweep (16 evaluations) on 2,000 test tokens took 23 s on one thread (fairly quiet); a busy
# server runs about twice as slow, so 1,200 tokens keep it near 30 s there.
MAX_TOKENS = 4_000
MAX_SWEEP_TOKENS = 1_500
MAX_BITS_TOKENS = 800  # three schemes' sweep scores 23 models: about 25 s on one thread
# A sensitivity map scores about 150 cells; at 500 tokens it takes about half a minute on one thread, and its
# trade-off (about 40 whole-model evaluations) about as long.
MAX_SENSITIVITY_TOKENS = 500
# Static or dynamic (wlm.static_quant): calibration on the training split (the float LSTM and the observers, plus the
# float decoder for the real static decoders) and 9 simulated variants scored together on the test tokens. With
# 1,000 test tokens and calibration sizes up to 5,000 the whole request took 12 s on one thread with the 2 cores
# shared with other work (load average 4); 2,000 and 20,000, the laptop's defaults, took 30 to 40 s.
MAX_STATIC_TOKENS = 1_000
MAX_STATIC_CALIBRATION_TOKENS = 5_000
# When int8 pays times float and int8 at each batch under every engine (4 here), the two taking turns on the same
# tokens: 16 walks plus 4 quantizations (1 to 4 s each). On 2,000 tokens of the bundled model (batches 1, 4, 16, 64)
# it took 19 s with the machine quiet and 69 s with it busy (load average 10 on 2 cores), qnnpack's int8 (0.3-0.6x
# float's speed on x86) about half of it; 1,000 tokens took 10 s quiet, about 35 s busy. A shared server times at
# most that, at batches up to 64.
MAX_SPEEDUP_TOKENS = 1_000
MAX_SPEEDUP_BATCH = 64
THREADS = 1
MAX_SWEEP_THREADS = 2  # a hosted thread sweep goes no higher, whatever cores the host has

# Text a visitor types. Scoring is chunked (memory follows one chunk, not the text), so these bound time and
# the page's size: 2,000 words score with both models in about a second here.
MAX_TEXT_WORDS, MAX_TEXT_CHARS = 2_000, 20_000  # text to score (Fidelity's surprise box)
MAX_PROMPT_WORDS, MAX_PROMPT_CHARS = 500, 5_000  # a prompt to continue (Generate, next word)

# Uploads. The bundled model (33,278 words, embedding 512, 5 LSTM layers of 256) has 28,484,606 parameters;
# a hosted server accepts models of up to twice that by default (``WLM_MAX_PARAMS`` sets another budget),
# so every token bound above, sized for that model, keeps its meaning.
BUNDLED_PARAMS = 28_484_606
PARAMS_ENV = "WLM_MAX_PARAMS"
DEFAULT_MAX_PARAMS = 2 * BUNDLED_PARAMS
# LSTM layers an upload may have (the tutorial's model has 5): building an nn.LSTM of 5,000 one-unit layers, a
# 6 MB file of 80,000 parameters, took 52 s here, and each token then 1.4 s.
MAX_LAYERS = 12

# Heavy untimed work at most this many at once: each holds temporary copies of the model (the bits sweep about
# 200 MB, a size measurement about 110 MB), so ten visitors opening ten setups at once needed 1.7 GB before this
# bound. Two queues of two: long work a visitor asks for with a button (the bits sweep, rounded models, ONNX
# export, fidelity) takes seconds to minutes; the short work that draws a page (quantizing a variant, measuring
# sizes, the sweep's estimate, the walkthrough's cards) takes about a second, and must not wait behind the long.
HEAVY_SLOTS = 2

PATH_SOURCE, FALLBACK_SOURCE = "path", "bundled"
PATH_NOTE = ("This server does not open files by path, so the link's model was not loaded; showing the "
             "bundled model. Upload a checkpoint in the sidebar to use your own.")
REACHABLE_NOTE = ("This server listens on {address}, where other machines can reach it, so it runs as a shared "
                  "server: uploads instead of paths, bounded requests. Run it on localhost (the default) to open "
                  "files by path.")


def hosted_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``WLM_HOSTED`` asks for hosted mode (see the module's docstring for the values)."""
    value = environ.get(ENV_VAR, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise WlmError(f"{ENV_VAR}={environ[ENV_VAR]!r} is not understood; use {ENV_VAR}=1 for a shared server "
                   f"or leave it unset (or 0) on a laptop")


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only. Unset or empty binds every
    interface, so it is not loopback."""
    address = (address or "").strip().strip("[]")
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name or an interface's address: other machines may reach it


@dataclass(frozen=True)
class ServingMode:
    hosted: bool
    note: str  # why the server runs hosted though WLM_HOSTED did not ask for it, else ""


def serving_mode(address: str | None, environ: Mapping[str, str] = os.environ) -> ServingMode:
    """Hosted when ``WLM_HOSTED`` says so, and also when the server listens beyond loopback."""
    if hosted_mode(environ):
        return ServingMode(True, "")
    if not is_loopback(address):
        return ServingMode(True, REACHABLE_NOTE.format(address=address or "every network interface"))
    return ServingMode(False, "")


# --- what a visitor sends ------------------------------------------------------------------------------------

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


def token_bound(total: int, hosted: bool, limit: int | None = None) -> int:
    """The most test tokens one request may offer to use: all ``total`` on a laptop, at most ``limit``
    (``MAX_TOKENS`` unless given) on a shared server. Every hosted token bound of the app is applied by this and
    ``bounded_tokens``."""
    return min(total, MAX_TOKENS if limit is None else limit) if hosted else total


def bounded_tokens(requested: int, hosted: bool, limit: int | None = None) -> int:
    """The tokens a request is served, whatever it asked for: a link or a script sends any number, whatever a
    slider's range allows."""
    return clamp_tokens(requested, MAX_TOKENS if limit is None else limit).tokens if hosted else int(requested)


def bounded_batches(batches, hosted: bool, limit: int | None = None) -> tuple[int, ...]:
    """The batch sizes a request is timed at: on a shared server those of at most ``limit``
    (``MAX_SPEEDUP_BATCH`` unless given), batch 1 when none is left."""
    batches = tuple(int(b) for b in batches)
    if not hosted:
        return batches
    limit = MAX_SPEEDUP_BATCH if limit is None else limit
    return tuple(b for b in batches if b <= limit) or (1,)


@dataclass(frozen=True)
class BoundedText:
    text: str  # what the server works on
    note: str  # what was cut, for the visitor, else ""


def bound_text(text: str, max_words: int, max_chars: int) -> BoundedText:
    """The first ``max_words`` words of ``text`` within ``max_chars`` characters, cut between words, saying what
    was cut. Line breaks inside the kept part stay (they are ``<eos>`` to the model)."""
    text = str(text)
    kept = text
    if len(kept) > max_chars:
        kept = kept[:max_chars]
        if not text[max_chars].isspace():  # do not keep half a word
            kept = kept[:max(kept.rfind(" "), kept.rfind("\n"), 0)]
    words = list(re.finditer(r"\S+", kept))
    if len(words) > max_words:
        kept = kept[:words[max_words - 1].end()]
    if kept == text:
        return BoundedText(text, "")
    # A text within the character bound is counted in words; a longer one is not split whole just to count it.
    asked = f"{len(text):,} characters" if len(text) > max_chars else f"{len(words):,} words"
    used = min(len(words), max_words)
    plural = "s" if used != 1 else ""
    return BoundedText(kept, f"This shared server reads at most {max_words:,} words ({max_chars:,} characters) of a "
                             f"text; only the first {used:,} word{plural} of yours ({asked}) were used.")


def max_params(environ: Mapping[str, str] = os.environ) -> int:
    """The most parameters an uploaded model may have on a hosted server: ``WLM_MAX_PARAMS``, else twice the
    bundled model's."""
    raw = environ.get(PARAMS_ENV, "").strip().replace("_", "").replace(",", "")
    if not raw:
        return DEFAULT_MAX_PARAMS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise WlmError(f"{PARAMS_ENV}={environ[PARAMS_ENV]!r} is not a whole number of parameters; set it to e.g. "
                       f"{DEFAULT_MAX_PARAMS} (the default, twice the bundled model's) or unset it")
    return value


def max_upload_bytes(params: int) -> int:
    """The largest upload a model of ``params`` parameters needs: float32 weights plus room for the names."""
    return 4 * params + (1 << 20)


# --- what a visitor is told ---------------------------------------------------------------------------------

_ABSOLUTE_PATH = re.compile(r"(?<![\w/.~-])(?:~|/)[^\s'\"()\[\]{},;]*[\w/]")


def public_message(message: str, hosted: bool) -> str:
    """``message`` as a visitor may read it: on a shared server, absolute paths become "a folder on the server"
    (they tell strangers how the server is laid out, and nothing they can act on)."""
    if not hosted:
        return message
    return _ABSOLUTE_PATH.sub("(a folder on the server)", message)


# --- the sources a session may open ---------------------------------------------------------------------------

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


# --- threads -----------------------------------------------------------------------------------------------------

def usable_cpus() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not every platform has affinity
        return max(1, os.cpu_count() or 1)


def sweep_threads(hosted: bool) -> list[int]:
    """The thread counts a thread sweep times: 1 up to the usable cores, capped on a shared server."""
    top = usable_cpus()
    return list(range(1, (min(top, MAX_SWEEP_THREADS) if hosted else top) + 1))


# --- the queues --------------------------------------------------------------------------------------------------

class Superseded(WlmError):
    """A queued request was replaced by a newer one from the same session before its turn came."""


class _Ticket:
    __slots__ = ("owner", "cancelled")

    def __init__(self, owner: Hashable):
        self.owner = owner
        self.cancelled = False


class FairQueue:
    """``slots`` requests at a time for the whole server, the rest served first come, first served.

    Each owner (a browser session) holds at most one place: a second request from the same owner while its
    first still waits replaces the first, whose wait ends with ``Superseded``. An owner already holding a slot
    may nest another ``hold`` (one cached function calling another) without queueing again.

    ``hold(owner, on_wait)`` calls ``on_wait(place)`` while it waits, about every ``poll`` seconds (place 1 means
    next), so a page can show its place and, because that call reaches Streamlit, a session that reruns or
    closes leaves the queue at once instead of holding a place nobody will use.
    """

    def __init__(self, slots: int = 1, poll: float = 0.5) -> None:
        if slots < 1:
            raise ValueError("a queue needs at least one slot")
        self.slots = slots
        self.poll = poll
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []  # in arrival order
        self._holders: dict[Hashable, int] = {}  # owner -> depth of nested holds

    @property
    def busy(self) -> bool:
        """Whether every slot is taken."""
        with self._cond:
            return len(self._holders) >= self.slots

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _place(self, ticket: _Ticket) -> int:
        """0 when ``ticket`` may take a free slot now, else its place in line (1 = next)."""
        free = self.slots - len(self._holders)
        position = self._waiting.index(ticket)
        return 0 if position < free else position - max(free, 0) + 1

    @contextlib.contextmanager
    def hold(self, owner: Hashable | None = None,
             on_wait: Callable[[int], None] | None = None) -> Iterator[bool]:
        """Hold a slot for the block; yields whether this request had to wait."""
        owner = object() if owner is None else owner  # no owner: a place of its own
        with self._cond:
            nested = owner in self._holders
            if nested:
                self._holders[owner] += 1
        if nested:
            try:
                yield False
            finally:
                self._release(owner)
            return
        waited = self._wait_for_slot(owner, on_wait)
        try:
            yield waited
        finally:
            self._release(owner)

    def _wait_for_slot(self, owner: Hashable, on_wait: Callable[[int], None] | None) -> bool:
        ticket = _Ticket(owner)
        with self._cond:
            for earlier in self._waiting:
                if earlier.owner == owner:
                    earlier.cancelled = True
            self._waiting = [t for t in self._waiting if t.owner != owner] + [ticket]
            self._cond.notify_all()
        waited = False
        try:
            while True:
                with self._cond:
                    if ticket.cancelled:
                        raise Superseded("a newer request from this page replaced this one in the queue")
                    place = self._place(ticket)
                    if place == 0:
                        self._waiting.remove(ticket)
                        self._holders[owner] = 1
                        return waited
                waited = True
                if on_wait is not None:
                    on_wait(place)  # outside the lock: it may raise (a rerun), which leaves the queue below
                with self._cond:
                    if not ticket.cancelled and self._place(ticket) == place:
                        self._cond.wait(self.poll)
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._cond.notify_all()
            raise

    def _release(self, owner: Hashable) -> None:
        with self._cond:
            self._holders[owner] -= 1
            if not self._holders[owner]:
                del self._holders[owner]
            self._cond.notify_all()


def waiting_message(place: int) -> str:
    """What a page whose request queues says while it waits."""
    if place <= 1:
        return "Another visitor's request is running on this shared server; yours is next and starts when it ends."
    return f"Other visitors' requests are running on this shared server; yours is number {place} in the queue."


# One per process: torch's thread count and the cores are shared by every session a server runs,
# and a test driving the app in this process can hold them to see the waiting page.
SERVER_LOCK = FairQueue(1)  # speed measurements, one at a time
HEAVY_WORK = FairQueue(HEAVY_SLOTS)  # long untimed work that holds copies of a model
PAGE_WORK = FairQueue(HEAVY_SLOTS)  # short untimed work that holds copies of a model, while a page draws
# Texts being written (two threads each): a class pressing Generate at once takes turns instead of sharing the cores
# forty ways; a session holds one place, so the line is never longer than the sessions.
WRITING = FairQueue(1)
