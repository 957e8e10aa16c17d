"""Sampling text from a model, and the same sampling from two models side by side.

Each step every word of the vocabulary gets its own random ticket (Gumbel noise, drawn from the
seed), and the word whose ticket plus its log-probability is highest is written: the Gumbel-max
trick, an exact draw from the model's distribution. Two models given the same seed hold the same
tickets, so they pick the same word with a probability close to the overlap of their two
distributions (1 - total variation). Where their texts part therefore measures how far apart they
are, and each text still depends only on its model, the seed, the temperature and the prompt.

A model reads a prompt, or any text (``read_chunks``, shared with ``next_word`` and ``surprisal``), a chunk
at a time, so a long one costs time but no more memory than a short one.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import numpy as np
import torch
from torch import nn

from .corpus import Dictionary
from .errors import WlmError

MAX_WORDS = 10_000
SMALLEST_UNIFORM = np.float32(2.0 ** -25)


def check_sampling(words: int, temperature: float) -> None:
    if not isinstance(words, int) or words < 1 or words > MAX_WORDS:
        raise WlmError(f"words must be between 1 and {MAX_WORDS:,}, got {words!r}")
    if not temperature >= 0:  # also catches NaN
        raise WlmError(f"temperature must be 0 (greedy) or more, got {temperature!r}")


class Tickets:
    """The seeded random numbers of one text: a start word, then one Gumbel ticket per word per step.

    A ticket is -log(-log u) for a uniform u. numpy's PCG64 draws a vocabulary's worth of float32
    uniforms several times faster than torch's generator, and the buffer is reused, so a step
    allocates nothing.
    """

    def __init__(self, seed: int, ntoken: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.ntoken = ntoken
        self.gumbel = np.empty(ntoken, dtype=np.float32)

    def start_word(self) -> int:
        return int(self.rng.integers(self.ntoken))

    def draw(self) -> np.ndarray:
        """The next step's tickets (the returned buffer is overwritten by the next draw)."""
        u = self.rng.random(dtype=np.float32, out=self.gumbel)
        # float32 uniforms lie on a 2^-24 grid and are exactly 0 about once in 2^24: read 0 as half a
        # step, a low but finite ticket, rather than log(0).
        np.maximum(u, SMALLEST_UNIFORM, out=u)
        np.log(u, out=u)
        np.negative(u, out=u)  # an exponential draw
        np.log(u, out=u)
        np.negative(u, out=u)
        return u


def pick(logits: np.ndarray, gumbel: np.ndarray, temperature: float, scratch: np.ndarray) -> int:
    """argmax(logits / T + g): a draw from softmax(logits / T). T = 0 is greedy and ignores the tickets."""
    if temperature == 0:
        return int(logits.argmax())
    np.multiply(logits, 1.0 / temperature, out=scratch)
    scratch += gumbel
    return int(scratch.argmax())


# --- reading a text or a prompt -----------------------------------------------------------------

READ_CHUNK = 64  # ids a model reads at once: its logits ([chunk x vocabulary]) are all a text costs in memory


@torch.no_grad()
def read_chunks(model: nn.Module, ids: list[int]) -> Iterator[tuple[int, torch.Tensor, tuple]]:
    """Feed ``ids`` to ``model`` ``READ_CHUNK`` at a time from a fresh state, the hidden state carried from
    chunk to chunk; yields (offset of the chunk in ``ids``, its logits [chunk, vocabulary], the hidden state
    after it).

    Reading a whole text at once would hold logits for every position: 20,000 words of a 33,278-word
    vocabulary are 2.7 GB in float32. A float model's logits are the one-shot ones to float rounding; a
    dynamically quantized one picks its activation scales per call, so its logits follow the chunking
    (by quantization noise), as they do in ``evaluate``'s chunks.
    """
    model.eval()
    hidden = model.init_hidden(1)
    for start in range(0, len(ids), READ_CHUNK):
        chunk = torch.tensor(ids[start:start + READ_CHUNK], dtype=torch.long).view(-1, 1)
        logits, hidden = model(chunk, hidden)
        yield start, logits[:, 0], hidden


def read_prompt(model: nn.Module, ids: list[int]) -> tuple[torch.Tensor, tuple]:
    """The model's logits for the word after ``ids`` (at least one) and its hidden state there."""
    if not ids:  # callers start an empty prompt from a word of their own (a line break, a seeded word)
        raise ValueError("read_prompt needs at least one id")
    for _, logits, hidden in read_chunks(model, ids):
        last = logits[-1].clone()  # not a view: the chunk's logits are freed as the next chunk comes
    return last, hidden


class _Reader:
    """A model reading one word at a time; ``logits`` are its scores for the next word (a numpy view)."""

    def __init__(self, model: nn.Module, start_ids: list[int]):
        model.eval()
        self.model = model
        self.input = torch.empty((1, 1), dtype=torch.long)  # reused every step
        logits, self.hidden = read_prompt(model, start_ids)
        self.logits = logits.float().numpy()

    @staticmethod
    def _last(out: torch.Tensor) -> np.ndarray:
        return out[-1, 0].detach().float().numpy()

    def read(self, word: int) -> None:
        self.input[0, 0] = word
        out, self.hidden = self.model(self.input, self.hidden)
        self.logits = self._last(out)


def _start(tickets: Tickets, prompt_ids: list[int] | None) -> list[int]:
    # Without a prompt the first input is a random word, drawn from the seed before any ticket.
    return list(prompt_ids) if prompt_ids else [tickets.start_word()]


@torch.no_grad()
def sample_ids(model: nn.Module, ntoken: int, *, words: int, temperature: float = 1.0, seed: int = 0,
               prompt_ids: list[int] | None = None) -> Iterator[int]:
    """Yield ``words`` sampled ids. Without a prompt the first input is a random word, as in the tutorial."""
    check_sampling(words, temperature)
    tickets = Tickets(seed, ntoken)
    reader = _Reader(model, _start(tickets, prompt_ids))
    scratch = np.empty(ntoken, dtype=np.float32)
    for step in range(words):
        word = pick(reader.logits, tickets.draw(), temperature, scratch)  # drawn even when greedy: seeds stay aligned
        yield word
        if step + 1 < words:
            reader.read(word)


def generate(model: nn.Module, dictionary: Dictionary, *, words: int, temperature: float = 1.0, seed: int = 0,
             prompt: str | None = None) -> Iterator[str]:
    """Yield generated words as plain strings (``<eos>`` included)."""
    prompt_ids, _ = dictionary.encode_prompt(prompt)
    for index in sample_ids(model, len(dictionary), words=words, temperature=temperature, seed=seed,
                            prompt_ids=prompt_ids):
        yield dictionary.idx2word[index]


@dataclass(frozen=True)
class Step:
    model: str  # the name given in ``generate_side_by_side``'s dict
    word: str | None  # None once that model has written all its words
    seconds: float  # since the start, when the word was written (or, with None, when the model finished)


def generate_side_by_side(models: dict[str, nn.Module], dictionary: Dictionary, *, words: int,
                          temperature: float = 1.0, seed: int = 0, prompt: str | None = None) -> Iterator[Step]:
    """``generate`` from several models at once, one thread each, yielding their words as they come.

    On a machine with a core per model the pair takes as long as the slower model rather than the sum
    of both, and a reader watches the quantized model pull ahead. Each model draws its tickets from
    its own generator, so the texts are exactly ``generate``'s. Bad parameters raise before any thread
    starts; an error inside a thread is raised here. Closing the iterator early stops the threads.
    """
    check_sampling(words, temperature)
    dictionary.encode_prompt(prompt)  # an unusable prompt fails here, not in a thread
    return _side_by_side(models, dictionary, words=words, temperature=temperature, seed=seed, prompt=prompt)


def _side_by_side(models: dict[str, nn.Module], dictionary: Dictionary, **kwargs) -> Iterator[Step]:
    steps: queue.Queue = queue.Queue()
    stop = threading.Event()
    start = time.perf_counter()

    def run(name: str, model: nn.Module) -> None:
        try:
            for word in generate(model, dictionary, **kwargs):
                if stop.is_set():
                    return
                steps.put(Step(name, word, time.perf_counter() - start))
            steps.put(Step(name, None, time.perf_counter() - start))
        except Exception as exc:  # handed to the reader, which raises it
            steps.put(exc)

    threads = [threading.Thread(target=run, args=item, daemon=True, name=f"generate-{item[0]}")
               for item in models.items()]
    for thread in threads:
        thread.start()
    try:
        for _ in range(len(models) * (kwargs["words"] + 1)):
            step = steps.get()
            if isinstance(step, Exception):
                raise step
            yield step
    finally:
        stop.set()


class Writing:
    """``generate_side_by_side`` run once in a background thread, for however many pages read it.

    A page takes a ``snapshot`` of the words written so far whenever it likes, and the writing goes on when the
    page goes away (a rerun, a closed tab): a page that comes back, or another one asking for the same texts,
    reads the same words and does not write them again. ``turn`` (a context manager factory) is held while the
    models write, so a server can let only a few writings run at once. Bad parameters raise here, before the
    thread starts; an error in the thread is kept in ``error``.
    """

    def __init__(self, models: dict[str, nn.Module], dictionary: Dictionary, *, words: int,
                 temperature: float = 1.0, seed: int = 0, prompt: str | None = None,
                 turn: Callable[[], ContextManager] | None = None, by: str = ""):
        check_sampling(words, temperature)
        dictionary.encode_prompt(prompt)
        self.asked, self.by = words, by  # ``by``: who asked first, in the caller's own terms
        self.words: dict[str, list[str]] = {name: [] for name in models}
        self.seconds: dict[str, float] = {}  # per model, from its first word's start to its last word
        self.error: Exception | None = None
        self.created = time.time()
        self._started, self._done = threading.Event(), threading.Event()
        kwargs = dict(words=words, temperature=temperature, seed=seed, prompt=prompt)
        self._thread = threading.Thread(target=self._run, args=(models, dictionary, kwargs, turn), daemon=True,
                                        name="writing")
        self._thread.start()

    def _run(self, models, dictionary, kwargs, turn) -> None:
        try:
            with (turn or contextlib.nullcontext)():
                self._started.set()
                for step in _side_by_side(models, dictionary, **kwargs):
                    if step.word is None:
                        self.seconds[step.model] = step.seconds
                    else:
                        self.words[step.model].append(step.word)
        except Exception as exc:  # read by the pages, which raise it
            self.error = exc
        finally:
            self._started.set()
            self._done.set()

    @property
    def started(self) -> bool:
        """Whether the models have begun (not still waiting for a turn)."""
        return self._started.is_set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for the end; whether it has ended."""
        return self._done.wait(seconds)

    def seconds_ago(self) -> float:
        """Since the writing was asked for."""
        return max(0.0, time.time() - self.created)

    def snapshot(self) -> dict[str, list[str]]:
        """Each model's words so far, as lists of their own."""
        return {name: list(words) for name, words in self.words.items()}


def first_difference(a: list[str], b: list[str]) -> int | None:
    """Index of the first position where two texts differ; None when one is a prefix of the other."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


# --- how likely a shared pick was -------------------------------------------------------------

def _softmax64(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()
    return z


def same_pick_probability(logits_a: np.ndarray, logits_b: np.ndarray, temperature: float) -> float:
    """1 - total variation between the two next-word distributions at this temperature: the chance
    that an ideal coupling of the two draws writes the same word (at T = 0: 1 if the top words agree)."""
    if temperature == 0:
        return float(logits_a.argmax() == logits_b.argmax())
    return float(np.minimum(_softmax64(logits_a, temperature), _softmax64(logits_b, temperature)).sum())


@torch.no_grad()
def same_pick_along(model_a: nn.Module, model_b: nn.Module, dictionary: Dictionary, words: list[str], *,
                    temperature: float = 1.0, seed: int = 0, prompt: str | None = None) -> list[float]:
    """For each word of ``words``, the chance the two models would have picked the same word there,
    both reading ``words`` from the start (the seed and prompt give the start, as in ``generate``).

    The models read one word per call, exactly as they did while writing, so the distributions are
    the ones their draws came from.
    """
    if not temperature >= 0:
        raise WlmError(f"temperature must be 0 (greedy) or more, got {temperature!r}")
    prompt_ids, _ = dictionary.encode_prompt(prompt)
    start = _start(Tickets(seed, len(dictionary)), prompt_ids)
    readers = _Reader(model_a, start), _Reader(model_b, start)
    odds = []
    for i, word in enumerate(words):
        odds.append(same_pick_probability(readers[0].logits, readers[1].logits, temperature))
        if i + 1 < len(words):
            for reader in readers:
                reader.read(dictionary.word2idx[word])
    return odds


@dataclass(frozen=True)
class Agreement:
    first_difference: int | None  # index of the first differing word; None when the texts never part
    agreed_words: int  # words the texts share before they part
    same_pick: list[float]  # per step of the shared prefix, the parting step included: 1 - TV
    mean_same_pick: float | None  # mean of ``same_pick``; None for empty texts


def agreement(model_a: nn.Module, model_b: nn.Module, dictionary: Dictionary, words_a: list[str],
              words_b: list[str], *, temperature: float = 1.0, seed: int = 0,
              prompt: str | None = None) -> Agreement:
    """Where two texts written from the same seed part, and how likely a shared pick was at each step
    until then. After they part each model read its own history, so later steps are not compared."""
    first = first_difference(words_a, words_b)
    agreed = min(len(words_a), len(words_b)) if first is None else first
    odds = same_pick_along(model_a, model_b, dictionary, words_a[:agreed + 1], temperature=temperature,
                           seed=seed, prompt=prompt)
    return Agreement(first, agreed, odds, float(np.mean(odds)) if odds else None)
