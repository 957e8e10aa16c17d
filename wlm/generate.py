"""Sampling text from a model, and the same sampling from two models side by side.

Each step draws one uniform number and inverts the cumulative distribution. Two models
given the same seed therefore pick the same word whenever their distributions agree closely
enough, so the first position where their texts differ measures how far apart they are.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .corpus import EOS, Dictionary
from .errors import WlmError

MAX_WORDS = 10_000


def check_sampling(words: int, temperature: float) -> None:
    if not isinstance(words, int) or words < 1 or words > MAX_WORDS:
        raise WlmError(f"words must be between 1 and {MAX_WORDS:,}, got {words!r}")
    if not temperature >= 0:  # also catches NaN
        raise WlmError(f"temperature must be 0 (greedy) or more, got {temperature!r}")


def encode_prompt(dictionary: Dictionary, prompt: str | None) -> tuple[list[int], list[str]]:
    """Prompt ids and the words that were not in the vocabulary (they become ``<unk>``)."""
    if not prompt or not prompt.strip():
        return [], []
    return dictionary.encode(prompt.split())


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    u = torch.rand((), generator=generator)  # drawn even when greedy, so seeds stay aligned
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    index = int(torch.searchsorted(torch.cumsum(probs, 0), u * probs.sum()))
    return min(index, probs.numel() - 1)


@torch.no_grad()
def sample_ids(model: nn.Module, ntoken: int, *, words: int, temperature: float = 1.0, seed: int = 0,
               prompt_ids: list[int] | None = None) -> Iterator[int]:
    """Yield ``words`` sampled ids. Without a prompt the first input is a random word, as in the tutorial."""
    check_sampling(words, temperature)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    hidden = model.init_hidden(1)
    start = prompt_ids or [int(torch.randint(ntoken, (1,), generator=generator))]
    logits, hidden = model(torch.tensor(start, dtype=torch.long).view(-1, 1), hidden)
    for _ in range(words):
        word = _pick(logits[-1, 0], temperature, generator)
        yield word
        logits, hidden = model(torch.tensor([[word]]), hidden)


def generate(model: nn.Module, dictionary: Dictionary, *, words: int, temperature: float = 1.0, seed: int = 0,
             prompt: str | None = None) -> Iterator[str]:
    """Yield generated words as plain strings (``<eos>`` included; ``as_text`` makes it a line break)."""
    prompt_ids, _ = encode_prompt(dictionary, prompt)
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
    of both, and a reader watches the quantized model pull ahead. Each model draws from its own
    generator, so the texts are exactly ``generate``'s. Bad parameters raise before any thread starts;
    an error inside a thread is raised here. Closing the iterator early stops the threads.
    """
    check_sampling(words, temperature)
    encode_prompt(dictionary, prompt)  # an unusable prompt fails here, not in a thread
    return _side_by_side(models, lambda model: generate(model, dictionary, words=words, temperature=temperature,
                                                        seed=seed, prompt=prompt), words)


def _side_by_side(models: dict[str, nn.Module], words_of, words: int) -> Iterator[Step]:
    steps: queue.Queue = queue.Queue()
    stop = threading.Event()
    start = time.perf_counter()

    def run(name: str, model: nn.Module) -> None:
        try:
            for word in words_of(model):
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
        for _ in range(len(models) * (words + 1)):
            step = steps.get()
            if isinstance(step, Exception):
                raise step
            yield step
    finally:
        stop.set()


def as_text(words: list[str]) -> str:
    """Words joined by spaces, with a line break for each ``<eos>``."""
    lines, line = [], []
    for word in words:
        if word == EOS:
            lines.append(" ".join(line))
            line = []
        else:
            line.append(word)
    return "\n".join(lines + [" ".join(line)])


@dataclass(frozen=True)
class PairedText:
    float_words: list[str]
    quant_words: list[str]
    first_difference: int | None  # index of the first differing word, None if identical
    unknown: list[str]  # prompt words that were replaced by <unk>


def generate_pair(float_model: nn.Module, quant_model: nn.Module, dictionary: Dictionary, *, words: int,
                  temperature: float = 1.0, seed: int = 0, prompt: str | None = None) -> PairedText:
    prompt_ids, unknown = encode_prompt(dictionary, prompt)
    kwargs = dict(words=words, temperature=temperature, seed=seed, prompt_ids=prompt_ids)
    a = [dictionary.idx2word[i] for i in sample_ids(float_model, len(dictionary), **kwargs)]
    b = [dictionary.idx2word[i] for i in sample_ids(quant_model, len(dictionary), **kwargs)]
    return PairedText(a, b, first_difference(a, b), unknown)


def first_difference(a: list[str], b: list[str]) -> int | None:
    """Index of the first position where two texts differ; None when one is a prefix of the other."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
