"""The app's backend: every ``st.cache_resource`` (models and the corpus, shared by every session) and every
``st.cache_data`` (measured results, reused across reruns and sessions) of the app, and nothing that draws.

Each cached function takes the typed values of ``ui.requests`` as its hashed arguments: a value is hashed by its
``key`` (its identity), never by its tensors, so a key cannot be paired with the wrong object. Whatever a call has
to tell the page while it works (its place in a queue, its progress) goes through the ``_page`` it is given: the
app passes ``ui.widgets.SessionPage``; without one, a call tells nothing. The callbacks create their elements
while the cached function runs, so a cached result replays them (filled and cleared) as nothing.

Adding a cached measurement is one function here: its hashed arguments are key objects and plain values, its
objects come out of the keys, and ``with timing_turn(page):`` (timed), ``heavy_turn`` (long untimed work) or
``page_turn`` (short work with temporary model copies) queues it with every other visitor's.
"""
from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st

from wlm import hosting
from wlm.benchmark import (
    benchmark_variants,
    measure_variant,
    row_label,
    thread_sweep,
    tokens_for_seconds,
    variant_frame,
    variant_plan,
    with_delta_loss,
)
from wlm.bundle import parts_read_ahead
from wlm.checkpoint import load_checkpoint_bytes, load_model
from wlm.corpus import Corpus
from wlm.dynamic_multiply import dynamic_multiply, input_from_position, input_from_prompt, moved_scores, scales_of
from wlm.evaluate import reporting_to
from wlm.fidelity import output_fidelity, weight_histogram, weight_sqnr
from wlm.generate import Agreement, Writing, agreement, generate
from wlm.lessons import LESSONS, Lesson, LessonRun, estimate_seconds, lesson_arguments, run_lesson
from wlm.low_bits import (
    DEFAULT_GROUP_SIZE,
    SCHEMES,
    SWEEP_BITS,
    SWEEP_SCHEMES,
    bits_histogram,
    estimate_sweep_seconds,
    simulate,
    sweep,
)
from wlm.memory import release_memory
from wlm.model import LoadedModel
from wlm.next_word import next_words_pair
from wlm.onnx_engine import onnx_model
from wlm.onnx_export import export_zip
from wlm.qengine import packing
from wlm.quantize import PRESETS, QuantSpec, quantize
from wlm.quantized_file import quantized_bytes
from wlm.sensitivity import (
    Mix,
    estimate_sensitivity_seconds,
    float_mb,
    frontier,
    mixed_model,
    part_label,
    parts,
    sensitivity,
    tradeoff,
)
from wlm.sizes import size_by_part, weights_per_part
from wlm.static_quant import StaticStudy
from wlm.static_quant import estimate_seconds as estimate_static_seconds
from wlm.static_quant import study as static_quant_study
from wlm.surprisal import surprisal_pair
from wlm.threads import num_threads, rest_at

from .requests import CorpusSource, ModelSource, Variant, Vocabulary

CPUS = hosting.usable_cpus()  # the cores this process may use: the sidebar's slider goes up to this
HASHED = {ModelSource: lambda s: s.key, Variant: lambda v: v.key, CorpusSource: lambda c: c.key,
          Vocabulary: lambda v: v.key}


def resource(**options):
    return st.cache_resource(hash_funcs=HASHED, **options)


def measured(**options):
    return st.cache_data(hash_funcs=HASHED, **options)


# --- how a call speaks to the page ------------------------------------------------------------------------------

class Notice:
    """Where a piece of work says its place in a queue while it waits; this one says nothing."""

    def show(self, place: int) -> None:
        pass

    def clear(self) -> None:
        pass


class Page:
    """How a backend call speaks to the page that asked. This one says nothing (scripts, tests)."""

    def __init__(self) -> None:
        # The name the server's queues know the asker by (one place per owner): a quiet caller is its own owner,
        # so two of them never take each other's place.
        self.owner = uuid.uuid4().hex

    def queue_notice(self) -> Notice:
        return Notice()

    def waited(self) -> None:
        """The work just queued behind another visitor's."""

    @contextlib.contextmanager
    def progress(self, text: str):
        """Yields ``report(fraction, detail)``, for work that counts what it has done."""
        yield lambda fraction, detail="": None

    @contextlib.contextmanager
    def spinner(self, text: str):
        yield


Report = Callable[[float, str], None]


def tokens_done(report: Report) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback of wlm's measurements, as a report in predictions (N tokens make N - 1)."""
    return lambda done, total: report(done / max(total, 1), f"{done:,}/{total:,} predictions")


@contextlib.contextmanager
def _turn(queue: hosting.FairQueue, page: Page | None):
    """A slot of ``queue`` for one piece of work, taken inside the cached function so a cached result never
    queues; while it waits, the page shows its place (``Notice.show`` is called about twice a second, which also
    lets Streamlit end the wait of a page that reran or closed)."""
    page = page or Page()
    notice = page.queue_notice()
    with queue.hold(page.owner, notice.show) as waited:
        notice.clear()
        if waited:
            page.waited()
        yield


def timing_turn(page: Page | None):
    """The server's timing queue for one speed measurement: torch's thread count is process-wide, and timings
    taken while another session computes are meaningless, so they run one at a time."""
    return _turn(hosting.SERVER_LOCK, page)


def heavy_turn(page: Page | None):
    """One of the server's few slots for long untimed work (temporary model copies, exports) that a visitor asks
    for, so that many visitors asking at once queue instead of filling the server's memory."""
    return _turn(hosting.HEAVY_WORK, page)


def page_turn(page: Page | None):
    """One of the server's few slots for the short work that draws a page with temporary model copies: its own
    queue, so that no page waits minutes behind other visitors' sweeps."""
    return _turn(hosting.PAGE_WORK, page)


def use_one_thread() -> None:
    # One word at a time through a batch-1 LSTM is too little work to split across threads; extra
    # threads only wait on each other, and on a busy machine they make generation many times slower.
    # Speed measurements set their own count (sidebar) for their duration and then return to this one,
    # whatever count they found (another session's sweep may be running at two). Each page run is a new
    # thread, which starts from the last count any thread set: it sets its own.
    rest_at(hosting.THREADS)


# --- what survives a clear-cache message ------------------------------------------------------------------------
# Streamlit empties every st.cache_resource of the server when any browser sends a clear_cache message, and no
# setting refuses it. The shared models are therefore also held here, by the process itself (the last few of
# each kind, as st.cache_resource keeps): after such a message the cached functions run again and find them in a
# lookup, instead of every session waiting while the corpus, the model and its variants are read and quantized
# again. Only what the server provides is held (the corpus, models from the server's own files and their
# variants); an upload is the visitor's, and leaves memory when Streamlit's cache lets it go.

class _Held:
    """The ``size`` most recently used values of one kind, by key."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], object]):
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()  # outside the lock: reading a corpus must not stop another kind's lookup
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value


_HELD_CORPORA, _HELD_MODELS, _HELD_PARTS, _HELD_VARIANTS = _Held(2), _Held(3), _Held(3), _Held(3)


def _held(held: _Held, key, make: Callable[[], object], keep: bool = True):
    return held.get(key, make) if keep else make()


# --- shared resources -------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner="Reading the corpus…", max_entries=2)
def load_corpus(path: str) -> Corpus:
    def read() -> Corpus:
        corpus = Corpus(path)
        release_memory()  # the word lists read on the way are gone
        return corpus

    return _held(_HELD_CORPORA, path, read)


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def load_source(kind: str, location: str, _data: bytes | None = None, max_params: int | None = None) -> LoadedModel:
    """The float model of a source; ``location`` identifies an upload (name, size, id) when ``_data`` is given, and
    an upload has at most ``max_params`` parameters (None: any size, as on a laptop). The caller wraps what this
    returns in the ``ModelSource`` that names it."""
    if kind == "upload":
        loaded = load_checkpoint_bytes(_data, location.split("|", 1)[0], max_params=max_params)
        release_memory()
        return loaded

    def read() -> LoadedModel:
        loaded = load_model(None if kind == "bundled" else location)
        release_memory()
        return loaded

    return _held(_HELD_MODELS, (kind, location), read)


@resource(max_entries=3)
def quantized_parts(source: ModelSource) -> dict:
    """Quantized parts of a source's model, lent from one variant to the next (7 kinds at most:
    8- or 4-bit embedding, qint8 or float16 LSTM, three decoders), so a toggle quantizes only what changed."""
    # A fresh server's first page may have had them quantized while it imported (wlm.bundle.read_ahead).
    return _held(_HELD_PARTS, source.key, lambda: parts_read_ahead(source.model), keep=not source.is_upload)


@resource(show_spinner="Quantizing…", max_entries=3)
def quantized_variant(source: ModelSource, spec: QuantSpec, _page: Page | None = None) -> Variant:
    """The quantized variant of a source's model (float parts shared with it); 3 variants are kept at most."""
    def make() -> Variant:
        with page_turn(_page):
            quantized = quantize(source.model, spec, quantized_parts(source))
        release_memory()  # the temporary copies of the quantized parts
        return Variant(source, spec, quantized)

    return _held(_HELD_VARIANTS, (source.key, spec), make, keep=not source.is_upload)


@resource(show_spinner="Exporting to ONNX and quantizing (once per model)…", max_entries=2)
def onnx_int8(source: ModelSource, _page: Page | None = None):
    """ONNX Runtime's int8 model of a source (files cached on disk, the session shared here)."""
    with heavy_turn(_page):
        return onnx_model(source.model, "int8", threads=1)


class PreparedZip:
    """A zip's bytes in an object a download button can hold weakly (bytes themselves cannot be)."""

    def __init__(self, data: bytes):
        self.data = data


@resource(show_spinner="Exporting to ONNX and quantizing with ONNX Runtime (once per model)…", max_entries=2)
def onnx_zip(source: ModelSource, vocabulary: Vocabulary, variant: str, _page: Page | None = None) -> PreparedZip:
    """The zip of a source's export, made once per server and shared by every session (``st.cache_data`` would
    hand each a copy of up to 100 MB). The export itself is also cached on disk (``wlm.onnx_engine``)."""
    with heavy_turn(_page):  # the export holds copies of the model: a few at a time
        prepared = PreparedZip(export_zip(source.model, vocabulary.dictionary, variant))
    release_memory()
    return prepared


@resource(max_entries=4)
def sweep_points(source: ModelSource, split: CorpusSource) -> dict:
    """Fewer bits: losses measured so far, keyed (scheme, bits, tokens, embedding[, group size]) as
    ``low_bits.sweep`` keys them, so a changed control re-measures only what it changes (another group size only
    the per-group points), and every session shares them."""
    return {}


@resource(show_spinner="Rounding the weights…", max_entries=3)
def simulated_model(source: ModelSource, bits: int, scheme: str, embedding: bool,
                    group_size: int = DEFAULT_GROUP_SIZE, _page: Page | None = None):
    with heavy_turn(_page):
        return simulate(source.model, bits, scheme, embedding, group_size)


# --- the Model tab --------------------------------------------------------------------------------------------

@measured(show_spinner=False, max_entries=8)
def float_sizes(source: ModelSource, _page: Page | None = None) -> pd.DataFrame:
    """Each part's serialized size in the float model: measured once per source, not again for every variant."""
    with page_turn(_page):  # each part is serialized to be measured
        sizes = size_by_part({"float": source.model})
    release_memory()  # the serialized copies measured
    return sizes


@measured(show_spinner=False, max_entries=32)
def quantized_sizes(variant: Variant, _page: Page | None = None) -> pd.DataFrame:
    with page_turn(_page):
        sizes = size_by_part({"quantized": variant.quantized})
    release_memory()
    return sizes


def part_sizes(variant: Variant, _page: Page | None = None) -> pd.DataFrame:
    return pd.concat([float_sizes(variant.source, _page=_page), quantized_sizes(variant, _page=_page)],
                     ignore_index=True)


@measured(show_spinner=False, max_entries=32)
def download_size(variant: Variant, _page: Page | None = None) -> int:
    """Bytes of the quantized model's download file, shown beside its button: the file is made once to be counted
    and let go (the button makes it again when pressed, in a fraction of a second), so no server holds it."""
    page = _page or Page()
    with page_turn(page), page.spinner("Measuring the download file…"):
        size = len(quantized_bytes(variant.quantized))
    release_memory()
    return size


@measured(show_spinner=False, max_entries=8)
def weights_of(source: ModelSource) -> dict[str, int]:
    """Weights per part of a source's model (its quantized variants hold as many)."""
    return weights_per_part(source.model)


# --- Speed & accuracy ------------------------------------------------------------------------------------------

@measured(show_spinner=False, max_entries=8)
def default_tokens(source: ModelSource, split: CorpusSource, _page: Page | None = None) -> int:
    """Tokens that float plus the tutorial's variant evaluate in about 5 s here.

    The int8 variant runs at roughly twice float's speed, so float gets about two thirds of the time."""
    with timing_turn(_page), num_threads(1):
        return tokens_for_seconds(source.model, split.ids, 5.0 / 1.5)


def _timed_variants(text: str, source: ModelSource, split: CorpusSource, specs: list, page: Page | None,
                    **kwargs) -> pd.DataFrame:
    """``benchmark_variants`` under a progress bar, one measurement at a time."""
    page = page or Page()
    with timing_turn(page), page.progress(text) as report:
        done = tokens_done(report)
        table = benchmark_variants(source.model, split.ids, specs,
                                   progress=lambda label, n, total: done(n, total), **kwargs)
    release_memory()  # each variant was a temporary copy
    return table


@dataclass(frozen=True)
class Measured:
    """A measurement with when and for which session it was made: a class that opened the same link shares one
    measurement, and a page shown another visitor's says so and offers its own."""

    value: pd.DataFrame
    at: float  # time.time() when it was measured
    by: str  # the owner of the page that asked first
    # A table of rows measured at different times: the rows another session's request measured (when and for
    # whom: ``at`` and ``by``, of the oldest). Empty when the whole value is one measurement.
    shared: tuple[str, ...] = ()

    def seconds_ago(self) -> float:
        return max(0.0, time.time() - self.at)


ROW_TTL = 600  # seconds a measured row of the variants table is lent to other visitors' tables


@measured(show_spinner=False, max_entries=64, ttl=ROW_TTL)
def variant_row(source: ModelSource, split: CorpusSource, engine: str, variant: QuantSpec | str, tokens: int,
                threads: int, again: int = 0, _page: Page | None = None) -> Measured:
    """One row of the variants table. Float's row and the tutorial's are in almost every visitor's table, so a
    class asking for twenty setups times them once, not twenty times, within ``ROW_TTL``."""
    page = _page or Page()
    with timing_turn(page), page.progress(f"Evaluating {row_label(engine, variant)}") as report:
        row = measure_variant(source.model, split.ids, engine, variant, max_tokens=tokens, threads=threads,
                              progress=tokens_done(report))
    release_memory()  # the variant was a temporary copy
    return Measured(row, time.time(), page.owner)


def variant_table(source: ModelSource, split: CorpusSource, specs: tuple[QuantSpec, ...], tokens: int, threads: int,
                  engines: tuple[str, ...] = ("torch",), again: int = 0, _page: Page | None = None) -> Measured:
    """Float, then ``specs`` (and ONNX Runtime's rows with ``engines``), a row at a time (``variant_row``): rows
    another visitor's request measured in the last ``ROW_TTL`` seconds are lent, and the result names them.
    ``again`` counts a session's "measure again" presses: a new count is a new key, so every row is measured anew."""
    page = _page or Page()
    plan = variant_plan(list(specs), engines)
    rows = [variant_row(source, split, engine, variant, tokens, threads, again, _page=page) for engine, variant in plan]
    table = variant_frame([row.value for row in rows])
    lent = {row_label(*asked): row for asked, row in zip(plan, rows) if row.by != page.owner}
    if not lent:
        return Measured(table, max(row.at for row in rows), page.owner)
    oldest = min(lent.values(), key=lambda row: row.at)
    names = tuple(lent)
    return Measured(table, oldest.at, oldest.by, () if len(lent) == len(rows) else names)


@measured(show_spinner=False, max_entries=8)
def tradeoff_table(source: ModelSource, split: CorpusSource, tokens: int, threads: int,
                   _page: Page | None = None) -> pd.DataFrame:
    return with_delta_loss(_timed_variants("Evaluating every preset", source, split, list(PRESETS), _page,
                                           max_tokens=tokens, threads=threads))


@measured(show_spinner=False, max_entries=8)
def sweep_table(source: ModelSource, spec: QuantSpec, split: CorpusSource, tokens: int, hosted: bool,
                _page: Page | None = None) -> pd.DataFrame:
    page = _page or Page()
    with timing_turn(page), page.spinner("Timing every thread count…"):
        sweep_result = thread_sweep(source.model, split.ids, [PRESETS["fp32"], spec], hosting.sweep_threads(hosted),
                                    tokens)
    release_memory()
    return sweep_result


# --- Fidelity -----------------------------------------------------------------------------------------------

ENGINES = ("torch", "onnxruntime")  # what a quantized model may run on


@measured(show_spinner=False, max_entries=16)
def fidelity_result(variant: Variant, split: CorpusSource, tokens: int, engine: str = "torch",
                    _page: Page | None = None):
    """The float model against ``variant`` run by PyTorch, or against ONNX Runtime's own int8 model of the same
    source (``engine='onnxruntime'``)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
    page = _page or Page()
    other = onnx_int8(variant.source, _page=page) if engine == "onnxruntime" else variant.quantized
    with heavy_turn(page), page.progress("Comparing outputs") as report:
        return output_fidelity(variant.source.model, other, split.ids, max_tokens=tokens,
                               progress=tokens_done(report))


@measured(show_spinner=False, max_entries=32)
def next_words(variant: Variant, vocabulary: Vocabulary, prompt: str, k: int) -> pd.DataFrame:
    return next_words_pair(variant.source.model, variant.quantized, vocabulary.dictionary, prompt, k)


@measured(show_spinner=False, max_entries=32)
def surprisal(variant: Variant, vocabulary: Vocabulary, text: str) -> pd.DataFrame:
    return surprisal_pair(variant.source.model, variant.quantized, vocabulary.dictionary, text)


@measured(show_spinner="Measuring every weight…", max_entries=16)
def sqnr_table(variant: Variant) -> pd.DataFrame:
    return weight_sqnr(variant.source.model, variant.quantized)


@measured(show_spinner=False, max_entries=32)
def histogram(variant: Variant, name: str):
    return weight_histogram(variant.source.model, variant.quantized, name)


# --- Generate --------------------------------------------------------------------------------------------------

# A writing that failed (or lost its place in line to the same session's next request) is not handed out again.
@resource(show_spinner=False, max_entries=32, ttl=600, validate=lambda job: job.error is None)
def writing(variant: Variant, vocabulary: Vocabulary, words: int, temperature: float, seed: int, prompt: str,
            again: int = 0, _page: Page | None = None) -> Writing:
    """Float and quantized writing from one seed, begun once for every session that asks for the same texts (the
    same seed writes the same words) and carried on in the background when the asking page reruns. ``again``
    counts a session's "write again" presses: a new count is a fresh writing, for its own speed. Writings take
    turns (``hosting.WRITING``), each session holding one place in line."""
    owner = (_page or Page()).owner
    return Writing({"float": variant.source.model, "quantized": variant.quantized}, vocabulary.dictionary,
                   words=words, temperature=temperature, seed=seed, prompt=prompt,
                   turn=lambda: hosting.WRITING.hold(owner), by=owner)


@measured(show_spinner=False, max_entries=64)
def shared_picks(variant: Variant, vocabulary: Vocabulary, seed: int, temperature: float, prompt: str, words: int,
                 _float_words: list[str], _quantized_words: list[str]) -> Agreement:
    """How likely each shared pick of two texts written from one seed was. The request before the underscores
    fixes both texts (the same seed writes the same words), so it is the whole key."""
    return agreement(variant.source.model, variant.quantized, vocabulary.dictionary, _float_words, _quantized_words,
                     temperature=temperature, seed=seed, prompt=prompt)


# --- Inside a multiply ---------------------------------------------------------------------------------------

@measured(show_spinner="Following the input through the layer…", max_entries=8)
def multiply_lesson(source: ModelSource, vocabulary: Vocabulary, split: CorpusSource | None, layer: str,
                    arrives: tuple, second_prompt: str, per_channel: bool):
    """The stages for one layer and input, the run-time scales of both inputs, and (decoder) the moved words.

    ``arrives`` is ('prompt', text) or ('position', index in the test split)."""
    model, dictionary = source.model, vocabulary.dictionary
    kind, value = arrives
    if kind == "position":
        if split is None:
            raise ValueError("a test position needs the test split")
        first = input_from_position(model, dictionary, split.ids, layer, int(value))
    else:
        first = input_from_prompt(model, dictionary, layer, value)
    inputs = [first]
    if second_prompt.strip():
        inputs.append(input_from_prompt(model, dictionary, layer, second_prompt))
    result = dynamic_multiply(model, first, per_channel=per_channel)
    moved = moved_scores(result, dictionary) if layer == "decoder" else None
    return result, scales_of(inputs), moved


# --- Fewer bits ----------------------------------------------------------------------------------------------

@measured(show_spinner="Timing a short probe to estimate the sweep…", max_entries=16)
def sweep_estimate(source: ModelSource, split: CorpusSource, tokens: int, embedding: bool,
                   schemes: tuple[str, ...] = SWEEP_SCHEMES, group_size: int = DEFAULT_GROUP_SIZE,
                   _page: Page | None = None) -> float:
    with page_turn(_page):
        return estimate_sweep_seconds(source.model, split.ids, max_tokens=tokens, embedding=embedding,
                                      schemes=schemes, group_size=group_size)


def run_sweep(source: ModelSource, split: CorpusSource, tokens: int, embedding: bool,
              schemes: tuple[str, ...] = SWEEP_SCHEMES, group_size: int = DEFAULT_GROUP_SIZE,
              _page: Page | None = None) -> pd.DataFrame:
    """Every width of each of ``schemes``, the float model and the real int8 variant; the points measured before,
    by any session, are reused (``sweep_points``)."""
    page = _page or Page()
    points = 2 + len(SWEEP_BITS) * len(schemes)
    seen: list[str] = []

    with heavy_turn(page), page.progress("Evaluating") as report:
        def progress(label: str, done: int, total: int) -> None:
            if label not in seen:
                seen.append(label)
            report((len(seen) - 1 + done / max(total, 1)) / points,
                   f"{label} ({len(seen)} of {points}): {done:,}/{total:,} tokens")

        return sweep(source.model, split.ids, max_tokens=tokens, embedding=embedding, progress=progress,
                     cache=sweep_points(source, split), schemes=schemes, group_size=group_size)


@measured(show_spinner="Writing with both models…", max_entries=32)
def paired_texts(source: ModelSource, vocabulary: Vocabulary, bits: int, scheme: str, embedding: bool, seed: int,
                 words: int, temperature: float, group_size: int = DEFAULT_GROUP_SIZE, _page: Page | None = None):
    """Float and N-bit text from the same seed (the coupled sampler), and where and how likely they part."""
    model, dictionary = source.model, vocabulary.dictionary
    rounded = simulated_model(source, bits, scheme, embedding, group_size, _page=_page)
    return written_beside_float(model, rounded, dictionary, seed, words, temperature)


def written_beside_float(model, other, dictionary, seed: int, words: int, temperature: float):
    """Float's and ``other``'s text from the same seed (the coupled sampler), and where and how likely they part."""
    texts = [list(generate(m, dictionary, words=words, temperature=temperature, seed=seed)) for m in (model, other)]
    return texts, agreement(model, other, dictionary, *texts, temperature=temperature, seed=seed)


@measured(show_spinner=False, max_entries=32)
def weight_grid(source: ModelSource, name: str, bits: int, scheme: str, group_size: int = DEFAULT_GROUP_SIZE):
    return bits_histogram(source.model, name, bits, scheme, group_size=group_size)


# --- the walkthrough's lessons ---------------------------------------------------------------------------------


def lesson_request(number: int, source: ModelSource | None, vocabulary: Vocabulary | None,
                   corpus: CorpusSource | None, seed: int, tokens: int) -> tuple:
    """The arguments of lesson ``number``'s cached run: what it does not read (itself or through the lessons it
    needs) becomes None or 0, so its key holds only what it reads, and one run serves every setup that differs in
    the rest (step 2 every model, step 4 every token count)."""
    reads = LESSONS[number - 1].inputs
    return (number, source if reads & {"model", "loaded"} else None, vocabulary if "dictionary" in reads else None,
            corpus if "corpus" in reads else None, seed if "seed" in reads else 0, tokens if "tokens" in reads else 0)


def _lesson_names(source: ModelSource | None, vocabulary: Vocabulary | None, corpus: CorpusSource | None, seed: int,
                  tokens: int) -> dict:
    """The names ``wlm.lessons`` runs a lesson on, from what its run was asked with (None: not read)."""
    names = {"seed": seed, "tokens": tokens}
    if source is not None:
        names.update(model=source.model, loaded=source.loaded)
    if vocabulary is not None:
        names["dictionary"] = vocabulary.dictionary
    if corpus is not None:
        names["corpus"] = corpus.corpus
    return names


def _lesson_inputs(number: int, source: ModelSource | None, vocabulary: Vocabulary | None,
                   corpus: CorpusSource | None, seed: int, tokens: int, page: Page | None) -> tuple[dict, dict]:
    """The names a lesson runs on, and what the lessons it needs gave ({number: values})."""
    # What the lessons it needs gave comes first, from their kept runs: each takes a turn of its own, and one
    # owner waiting for a second turn while holding the first could wait forever.
    earlier = {giver: kept_lesson(*lesson_request(giver, source, vocabulary, corpus, seed, tokens), _page=page).values
               for giver in sorted(set(LESSONS[number - 1].needs.values()))}
    return _lesson_names(source, vocabulary, corpus, seed, tokens), earlier


@contextlib.contextmanager
def _lesson_turn(lesson: Lesson, page: Page | None):
    """A timing runs alone on the server, on one thread, as the tutorial; the other lessons make temporary copies
    (step 5 quantizes, 6 serializes, 8 makes variants) and take a page's turn."""
    if lesson.timed:
        with timing_turn(page), num_threads(1):
            yield
    else:
        # Step 5 calls quantize_dynamic itself: it packs for this process's engine, whatever an engine sweep in
        # another session has switched to.
        with page_turn(page), packing():
            yield


@contextlib.contextmanager
def _following(lesson: Lesson, seconds: dict[str, float], page: Page | None):
    """A progress bar over the evaluations the lesson's code makes (its ``EVALUATES``), each weighted by its
    estimated time: ``wlm.evaluate.reporting_to`` hears every ``evaluate`` call of that code as it runs it."""
    if not lesson.evaluates:
        yield
        return
    page = page or Page()
    names = lesson.evaluates
    weights = [max(seconds.get(name, 0.0), 1e-6) for name in names]
    last = [0.0]
    with page.progress("Running the code:") as report:
        def progress(n: int, done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] < 0.25 and done < total:  # a few updates a second: each costs the timing a little
                return
            last[0] = now
            k = min(n, len(names) - 1)
            report((sum(weights[:k]) + weights[k] * done / max(total, 1)) / sum(weights),
                   f"evaluate of `{names[k]}` ({k + 1} of {len(names)}), {done:,}/{total:,} tokens")

        with reporting_to(progress):
            yield


def _run_lesson(number: int, source: ModelSource | None, vocabulary: Vocabulary | None, corpus: CorpusSource | None,
                seed: int, tokens: int, page: Page | None, spinner: str | None = None) -> LessonRun:
    """The lesson run in its turn; while it runs, a progress bar over what it evaluates, else ``spinner`` if any."""
    lesson = LESSONS[number - 1]
    page = page or Page()
    # The estimate (the card asked for it first, so it is cached) weighs each evaluation on the progress bar.
    seconds = (_lesson_estimate(*lesson_request(number, source, vocabulary, corpus, seed, tokens), _page=page)
               if lesson.evaluates else {})
    names, earlier = _lesson_inputs(number, source, vocabulary, corpus, seed, tokens, page)
    shown = (_following(lesson, seconds, page) if lesson.evaluates else
             page.spinner(spinner) if spinner else contextlib.nullcontext())
    with _lesson_turn(lesson, page), shown:
        run = run_lesson(number, names, earlier)
    if not lesson.timed:
        release_memory()
    return run


# One run of each lesson that later lessons need: it may hold a model (step 5's, about 80 MB for the bundled one).
@resource(show_spinner="Running the lesson's code (once, for the steps after it)…",
          max_entries=max(1, sum(lesson.kept for lesson in LESSONS)))
def kept_lesson(number: int, source: ModelSource | None, vocabulary: Vocabulary | None, corpus: CorpusSource | None,
                seed: int, tokens: int, _page: Page | None = None) -> LessonRun:
    """A lesson whose values later lessons read, shared by every session as it is (``st.cache_data`` would copy
    the model into each)."""
    return _run_lesson(number, source, vocabulary, corpus, seed, tokens, _page)


# The page's own spinner, not the cache's: a lesson that evaluates shows its progress bar in that place instead.
@measured(show_spinner=False, max_entries=32)
def lesson_result(number: int, source: ModelSource | None, vocabulary: Vocabulary | None, corpus: CorpusSource | None,
                  seed: int, tokens: int, _page: Page | None = None) -> LessonRun:
    return _run_lesson(number, source, vocabulary, corpus, seed, tokens, _page, spinner="Running the lesson's code…")


def lesson_run(number: int, source: ModelSource | None, vocabulary: Vocabulary | None, corpus: CorpusSource | None,
               seed: int, tokens: int, _page: Page | None = None) -> LessonRun:
    """Lesson ``number`` on a setup, from the cache that suits it; only what it reads reaches the key
    (``lesson_request``)."""
    cached = kept_lesson if LESSONS[number - 1].kept else lesson_result
    return cached(*lesson_request(number, source, vocabulary, corpus, seed, tokens), _page=_page)


@measured(show_spinner="Timing a short probe of each model to estimate the run…", max_entries=32)
def _lesson_estimate(number: int, source: ModelSource | None, vocabulary: Vocabulary | None,
                     corpus: CorpusSource | None, seed: int, tokens: int, _page: Page | None = None) -> dict:
    names, earlier = _lesson_inputs(number, source, vocabulary, corpus, seed, tokens, _page)
    arguments = lesson_arguments(number, names, earlier)
    lesson = LESSONS[number - 1]
    with _lesson_turn(lesson, _page):  # queued, and on the threads, as the run will be
        return estimate_seconds(lesson, arguments)


def lesson_estimate(number: int, source: ModelSource | None, vocabulary: Vocabulary | None,
                    corpus: CorpusSource | None, seed: int, tokens: int, _page: Page | None = None) -> dict:
    """For a lesson that ``EVALUATES`` models: about how long each evaluation of its code takes here, {name:
    seconds}, from a short timed probe of each (``wlm.lessons.estimate_seconds``), before the lesson runs."""
    return _lesson_estimate(*lesson_request(number, source, vocabulary, corpus, seed, tokens), _page=_page)


# --- When int8 pays ---
# Imported here, with the section, so that this section is all one block of the file.
from wlm.speedup import Probe, probe, when_int8_pays  # noqa: E402


@measured(show_spinner="Timing a short probe to estimate the sweep…", max_entries=8)
def speedup_probe(source: ModelSource, split: CorpusSource, low: int, high: int,
                  _page: Page | None = None) -> Probe:
    """Float's and int8's speed at batches ``low`` and ``high`` and the time to quantize, under the engine in use:
    what the page estimates any sweep from before it starts. A timing, in the timing turn on one thread (it also
    quantizes, which must never happen while a sweep has switched the engine)."""
    with timing_turn(_page), num_threads(1):
        return probe(source.model, split.ids, (low, high))


@measured(show_spinner=False, max_entries=8)
def speedup_sweep(source: ModelSource, split: CorpusSource, engines: tuple[str, ...], batches: tuple[int, ...],
                  tokens: int, hosted: bool, again: int = 0, _page: Page | None = None) -> Measured:
    """``wlm.speedup.when_int8_pays`` (float and int8 at each batch under each engine, and per part) on one thread.
    Torch's quantized engine is process-wide, so each switch happens inside the timing turn, which no other
    timing shares; on a shared server the tokens and batches are bounded (``wlm.hosting``). ``again`` counts a
    session's "measure again" presses."""
    page = _page or Page()
    tokens = hosting.bounded_tokens(tokens, hosted, hosting.MAX_SPEEDUP_TOKENS)
    batches = hosting.bounded_batches(batches, hosted)
    with timing_turn(page), page.progress("Timing float and int8:") as report:
        result = when_int8_pays(source.model, split.ids, engines=engines, batches=batches, max_tokens=tokens,
                                threads=1, progress=lambda label, done, total: report(
                                    done / max(total, 1), f"{label} ({min(done + 1, total)} of {total})"))
    release_memory()  # each engine's int8 variant was a temporary copy
    return Measured(result, time.time(), page.owner)


# --- Static or dynamic ---

def static_request(tokens: int, calibration_tokens: int, sizes: tuple[int, ...],
                   hosted: bool) -> tuple[int, int, tuple[int, ...]]:
    """Test tokens, calibration tokens and calibration sizes as a shared server serves them (``wlm.hosting``'s
    bounds, applied to what the server received: a link or a script sends any number)."""
    calibration = hosting.MAX_STATIC_CALIBRATION_TOKENS
    return (hosting.bounded_tokens(tokens, hosted, hosting.MAX_STATIC_TOKENS),
            hosting.bounded_tokens(calibration_tokens, hosted, calibration),
            tuple(sorted({hosting.bounded_tokens(s, hosted, calibration) for s in sizes})))


@measured(show_spinner="Timing a short probe to estimate the measurement…", max_entries=16)
def static_estimate(source: ModelSource, split: CorpusSource, tokens: int, calibration_tokens: int,
                    sizes: tuple[int, ...], hosted: bool, _page: Page | None = None) -> dict[str, float]:
    """About how long each stage of the static-or-dynamic study takes here, {stage: seconds}, from a short probe."""
    tokens, calibration_tokens, sizes = static_request(tokens, calibration_tokens, sizes, hosted)
    variant = quantized_variant(source, PRESETS["tutorial"], _page=_page)
    with page_turn(_page):
        return estimate_static_seconds(source.model, split.ids, split.corpus.train, max_tokens=tokens,
                                       calibration_tokens=calibration_tokens, sizes=sizes, threads=hosting.THREADS,
                                       quantized=variant.quantized)


@measured(show_spinner=False, max_entries=8)
def static_study(source: ModelSource, split: CorpusSource, tokens: int, calibration_tokens: int,
                 sizes: tuple[int, ...], hosted: bool, _page: Page | None = None) -> StaticStudy:
    """Static against dynamic on the first ``tokens`` test tokens, calibrated on the training split
    (``wlm.static_quant.study``), under a progress bar weighted by each stage's estimate."""
    page = _page or Page()
    # both take turns of their own, so they come before this one's (the tab asked for both first: cached)
    weights = static_estimate(source, split, tokens, calibration_tokens, sizes, hosted, _page=page)
    variant = quantized_variant(source, PRESETS["tutorial"], _page=page)
    tokens, calibration_tokens, sizes = static_request(tokens, calibration_tokens, sizes, hosted)
    labels, total = list(weights), max(sum(weights.values()), 1e-9)
    with heavy_turn(page), page.progress("Measuring") as report:
        def progress(label: str, done: int, count: int) -> None:
            before = sum(weights[name] for name in labels[:labels.index(label)]) if label in weights else 0.0
            report((before + weights.get(label, 0.0) * done / max(count, 1)) / total,
                   f"{label}: {done:,}/{count:,} tokens")

        found = static_quant_study(source.model, split.ids, split.corpus.train, max_tokens=tokens,
                                   calibration_tokens=calibration_tokens, sizes=sizes, threads=hosting.THREADS,
                                   quantized=variant.quantized, progress=progress)
    release_memory()  # the simulated model's weight codes and the static decoders
    return found


# --- Which parts ---

def map_request(schemes, bits, group_size: int, tokens: int,
                hosted: bool) -> tuple[tuple[str, ...], tuple[int, ...], int, int]:
    """Schemes, widths, group size and test tokens as the server serves a map: in one order whatever order they were
    picked in, a group size only where a per-group scheme reads it (so one map serves every other choice of it), and
    a shared server's token bound (``wlm.hosting``) applied to what it received, since a script sends any number."""
    schemes = tuple(sorted(set(schemes), key=lambda s: SCHEMES.index(s) if s in SCHEMES else len(SCHEMES)))
    bits = tuple(sorted(set(bits), reverse=True))
    group_size = group_size if any("per-group" in str(s) for s in schemes) else DEFAULT_GROUP_SIZE
    return schemes, bits, group_size, hosting.bounded_tokens(tokens, hosted, hosting.MAX_SENSITIVITY_TOKENS)


@measured(show_spinner="Timing a short probe to estimate the map…", max_entries=16)
def sensitivity_estimate(source: ModelSource, split: CorpusSource, schemes: tuple[str, ...], bits: tuple[int, ...],
                         group_size: int, tokens: int, hosted: bool, _page: Page | None = None) -> float:
    """About how long the map takes here, from a short probe of the decoder's and one LSTM layer's passes."""
    schemes, bits, group_size, tokens = map_request(schemes, bits, group_size, tokens, hosted)
    with page_turn(_page):  # the probe builds a pass of rounded decoders
        seconds = estimate_sensitivity_seconds(source.model, split.ids, bits=bits, schemes=schemes,
                                               group_size=group_size, max_tokens=tokens, threads=hosting.THREADS)
    release_memory()
    return seconds


@measured(show_spinner=False, max_entries=8)
def sensitivity_map(source: ModelSource, split: CorpusSource, schemes: tuple[str, ...], bits: tuple[int, ...],
                    group_size: int, tokens: int, hosted: bool, _page: Page | None = None) -> pd.DataFrame:
    """``wlm.sensitivity.sensitivity`` (each part quantized alone) under a progress bar, one part after another."""
    page = _page or Page()
    schemes, bits, group_size, tokens = map_request(schemes, bits, group_size, tokens, hosted)
    order = parts(source.model)
    with heavy_turn(page), page.progress("Quantizing each part alone:") as report:
        def progress(part: str, done: int, total: int) -> None:
            k = order.index(part)
            report((k + done / max(total, 1)) / len(order),
                   f"{part_label(part)} ({k + 1} of {len(order)}), {done:,}/{total:,} tokens")

        table = sensitivity(source.model, split.ids, bits=bits, schemes=schemes, group_size=group_size,
                            max_tokens=tokens, threads=hosting.THREADS, progress=progress)
    release_memory()  # every candidate of every pass
    return table


@measured(show_spinner="Finding the smallest mix of the map…", max_entries=8)
def budget_range(source: ModelSource, split: CorpusSource, schemes: tuple[str, ...], bits: tuple[int, ...],
                 group_size: int, tokens: int, hosted: bool, _page: Page | None = None) -> tuple[float, float]:
    """The smallest stored size (MB) a mix of the map's cells reaches, and the float model's: a budget's range."""
    table = sensitivity_map(source, split, schemes, bits, group_size, tokens, hosted, _page=_page)
    model = source.model
    return frontier(model, table)[0].size_mb, float_mb(model)


@resource(max_entries=4)
def tradeoff_points(source: ModelSource, split: CorpusSource, tokens: int) -> dict:
    """Which parts: whole mixed models evaluated so far on the first ``tokens`` test tokens, keyed by their cells
    (``wlm.sensitivity.tradeoff``'s cache), so another budget, asked by any session, measures only what it adds."""
    return {}


@measured(show_spinner=False, max_entries=16)
def mix_tradeoff(source: ModelSource, split: CorpusSource, schemes: tuple[str, ...], bits: tuple[int, ...],
                 group_size: int, tokens: int, hosted: bool, budget_mb: float,
                 _page: Page | None = None) -> tuple[pd.DataFrame, Mix]:
    """Every uniform choice of the map and the best mix of each one's size, measured as whole models, and the mix
    picked for ``budget_mb`` (``wlm.sensitivity.tradeoff``). A budget no mix fits in is a ``WlmError``."""
    page = _page or Page()
    table = sensitivity_map(source, split, schemes, bits, group_size, tokens, hosted, _page=page)  # its own turn
    tokens = map_request(schemes, bits, group_size, tokens, hosted)[3]
    with heavy_turn(page), page.progress("Measuring whole models:") as report:
        result = tradeoff(source.model, table, split.ids, float(budget_mb), max_tokens=tokens,
                          threads=hosting.THREADS, cache=tradeoff_points(source, split, tokens),
                          progress=lambda label, done, total: report(done / max(total, 1),
                                                                     f"{done:,}/{total:,} tokens"))
    release_memory()  # each mixed model was a temporary copy
    return result


@measured(show_spinner="Writing with both models…", max_entries=32)
def pick_texts(source: ModelSource, vocabulary: Vocabulary, split: CorpusSource, schemes: tuple[str, ...],
               bits: tuple[int, ...], group_size: int, tokens: int, hosted: bool, budget_mb: float, seed: int,
               words: int, temperature: float, _page: Page | None = None):
    """Float's text and the text of the mix picked for the same request (``mix_tradeoff``), from the same seed."""
    _, mix = mix_tradeoff(source, split, schemes, bits, group_size, tokens, hosted, budget_mb, _page=_page)
    with page_turn(_page):
        written = written_beside_float(source.model, mixed_model(source.model, mix), vocabulary.dictionary, seed,
                                       words, temperature)
    release_memory()  # the mixed model
    return written
