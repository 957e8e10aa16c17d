"""The app's backend: models and the corpus shared by every session (``st.cache_resource``), and
measured results reused across reruns and sessions (``st.cache_data``).

Arguments whose names start with ``_`` are not hashed; the keys before them (source, corpus,
spec) say what they are.
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
import torch

from wlm import hosting
from wlm.benchmark import benchmark_variants, thread_sweep, tokens_for_seconds, with_delta_loss
from wlm.checkpoint import load_checkpoint_bytes, load_model
from wlm.corpus import Corpus
from wlm.fidelity import output_fidelity, weight_histogram, weight_sqnr
from wlm.memory import release_memory
from wlm.model import LoadedModel
from wlm.next_word import next_words_pair
from wlm.onnx_engine import onnx_model
from wlm.quantize import PRESETS, QuantSpec, quantize
from wlm.sizes import size_by_part, weights_per_part
from wlm.surprisal import surprisal_pair
from wlm.threads import num_threads, rest_at

from .widgets import progress_bar

CPUS = hosting.usable_cpus()  # the cores this process may use: the sidebar's slider goes up to this


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


def _is_upload(source_key: str) -> bool:
    return source_key.startswith("upload:")


# --- shared resources ------------------------------------------------------------------------

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
    an upload has at most ``max_params`` parameters (None: any size, as on a laptop)."""
    if kind == "upload":
        loaded = load_checkpoint_bytes(_data, location.split("|", 1)[0], max_params=max_params)
        release_memory()
        return loaded

    def read() -> LoadedModel:
        loaded = load_model(None if kind == "bundled" else location)
        release_memory()
        return loaded

    return _held(_HELD_MODELS, (kind, location), read)


@st.cache_resource(max_entries=3)
def quantized_parts(source_key: str) -> dict:
    """Quantized parts of a source's model, lent from one variant to the next (7 kinds at most:
    8- or 4-bit embedding, qint8 or float16 LSTM, three decoders), so a toggle quantizes only what changed."""
    return _held(_HELD_PARTS, source_key, dict, keep=not _is_upload(source_key))


@st.cache_resource(show_spinner="Quantizing…", max_entries=3)
def quantized_variant(source_key: str, spec: QuantSpec, _model: torch.nn.Module) -> torch.nn.Module:
    """The quantized variant of a source's model (float parts shared with it); 3 variants are kept at most."""
    def make() -> torch.nn.Module:
        with page_turn("quantized_variant", source_key, spec):
            variant = quantize(_model, spec, quantized_parts(source_key))
        release_memory()  # the temporary copies of the quantized parts
        return variant

    return _held(_HELD_VARIANTS, (source_key, spec), make, keep=not _is_upload(source_key))


def use_one_thread() -> None:
    # One word at a time through a batch-1 LSTM is too little work to split across threads; extra
    # threads only wait on each other, and on a busy machine they make generation many times slower.
    # Speed measurements set their own count (sidebar) for their duration and then return to this one,
    # whatever count they found (another session's sweep may be running at two). Each page run is a new
    # thread, which starts from the last count any thread set: it sets its own.
    rest_at(hosting.THREADS)


WAITED = "_waited"  # session state: the measurements of this session that queued behind another session's
OWNER = "_queue_owner"  # session state: this session's name in the server's queues


def _owner() -> str:
    """This session's place-holder name in the queues: one place per session, whatever it asks."""
    return st.session_state.setdefault(OWNER, uuid.uuid4().hex)


@contextlib.contextmanager
def _turn(queue: hosting.FairQueue, measurement: tuple):
    """A slot of ``queue`` for one piece of work, taken inside the cached function so a cached result never
    queues. While the work waits, the page shows its place in the queue (updated as it moves up); afterwards
    the session remembers that ``measurement`` (the cached function's name and its keys) waited, for
    ``waited_caption``. The placeholder is made in here so that a cache hit replays it filled and cleared,
    that is as nothing."""
    waiting = st.empty()

    def say_where_it_waits(place: int) -> None:
        # Called about twice a second: besides moving the place, the call lets Streamlit end the wait of a
        # page that reran or closed, so an abandoned request gives its place up at once.
        waiting.info(hosting.waiting_message(place), icon=":material/hourglass_top:")

    with queue.hold(_owner(), say_where_it_waits) as waited:
        waiting.empty()
        if waited:
            st.session_state.setdefault(WAITED, set()).add(measurement)
        yield


@contextlib.contextmanager
def timing_turn(*measurement):
    """The server's timing queue for one speed measurement: torch's thread count is process-wide, and
    timings taken while another session computes are meaningless, so they run one at a time."""
    with _turn(hosting.SERVER_LOCK, measurement):
        yield


@contextlib.contextmanager
def heavy_turn(*work):
    """One of the server's few slots for long untimed work (temporary model copies, exports) that a visitor asks
    for, so that many visitors asking at once queue instead of filling the server's memory."""
    with _turn(hosting.HEAVY_WORK, work):
        yield


@contextlib.contextmanager
def page_turn(*work):
    """One of the server's few slots for the short work that draws a page with temporary model copies: its own
    queue, so that no page waits minutes behind other visitors' sweeps."""
    with _turn(hosting.PAGE_WORK, work):
        yield


def waited_caption(*measurement) -> None:
    """A lasting word under a result that had to wait for another visitor's measurement."""
    if measurement in st.session_state.get(WAITED, ()):
        st.caption(":material/hourglass_bottom: This measurement waited for another visitor's to finish first, "
                   "so that neither slowed the other.")


@st.cache_resource(show_spinner="Exporting to ONNX and quantizing (once per model)…", max_entries=2)
def onnx_int8(source_key: str, _model):
    """ONNX Runtime's int8 model of a source (files cached on disk, the session shared here)."""
    with heavy_turn("onnx_int8", source_key):
        return onnx_model(_model, "int8", threads=1)


# --- measured results ------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=32)
def _sizes_of(source_key: str, label: str, spec: QuantSpec, _model):
    with page_turn("sizes", source_key, label, spec):  # each part is serialized to be measured
        sizes = size_by_part({label: _model})
    release_memory()  # the serialized copies measured
    return sizes


def part_sizes(source_key: str, spec: QuantSpec, _float, _quant):
    # The float model's sizes are measured once per source, not again for every variant.
    return pd.concat([_sizes_of(source_key, "float", PRESETS["fp32"], _float),
                      _sizes_of(source_key, "quantized", spec, _quant)], ignore_index=True)


@st.cache_data(show_spinner=False, max_entries=8)
def weights_of(source_key: str, _model) -> dict[str, int]:
    """Weights per part of a source's model (its quantized variants hold as many)."""
    return weights_per_part(_model)


@st.cache_data(show_spinner=False, max_entries=8)
def default_tokens(source_key: str, corpus_key: str, _model, _ids) -> int:
    """Tokens that float plus the tutorial's variant evaluate in about 5 s here.

    The int8 variant runs at roughly twice float's speed, so float gets about two thirds of the time."""
    with timing_turn("default_tokens", source_key, corpus_key), num_threads(1):
        return tokens_for_seconds(_model, _ids, 5.0 / 1.5)


def _timed_variants(text: str, measurement: tuple, _model, _ids, specs: list, **kwargs) -> pd.DataFrame:
    """``benchmark_variants`` under a progress bar, one measurement at a time."""
    with timing_turn(*measurement):
        bar, report = progress_bar(text)
        table = benchmark_variants(_model, _ids, specs, progress=lambda label, done, total: report(done, total),
                                   **kwargs)
    bar.empty()
    release_memory()  # each variant was a temporary copy
    return table


@dataclass(frozen=True)
class Measured:
    """A measurement with when and for which session it was made: a class that opened the same link shares one
    measurement, and a page shown another visitor's says so and offers its own."""

    value: pd.DataFrame
    at: float  # time.time() when it was measured
    by: str  # the session that asked first (``_owner``)

    def seconds_ago(self) -> float:
        return max(0.0, time.time() - self.at)

    def for_another_session(self) -> bool:
        return self.by != _owner()


@st.cache_data(show_spinner=False, max_entries=16)
def variant_table(source_key: str, corpus_key: str, specs: tuple[QuantSpec, ...], tokens: int, threads: int,
                  _model, _ids, engines: tuple[str, ...] = ("torch",), again: int = 0) -> Measured:
    """``again`` counts a session's "measure again" presses: a new count is a new key, so a fresh measurement."""
    measurement = ("variant_table", source_key, corpus_key, specs, tokens, threads, engines, again)
    table = _timed_variants("Evaluating", measurement, _model, _ids, list(specs), max_tokens=tokens, threads=threads,
                            engines=engines)
    return Measured(table, time.time(), _owner())


@st.cache_data(show_spinner=False, max_entries=8)
def tradeoff_table(source_key: str, corpus_key: str, tokens: int, threads: int, _model, _ids):
    measurement = ("tradeoff_table", source_key, corpus_key, tokens, threads)
    return with_delta_loss(_timed_variants("Evaluating every preset", measurement, _model, _ids, list(PRESETS),
                                           max_tokens=tokens, threads=threads))


@st.cache_data(show_spinner=False, max_entries=8)
def sweep_table(source_key: str, corpus_key: str, spec: QuantSpec, tokens: int, hosted: bool, _model, _ids):
    with timing_turn("sweep_table", source_key, corpus_key, spec, tokens, hosted), \
            st.spinner("Timing every thread count…"):
        sweep = thread_sweep(_model, _ids, [PRESETS["fp32"], spec], hosting.sweep_threads(hosted), tokens)
    release_memory()
    return sweep


@st.cache_data(show_spinner=False, max_entries=16)
def fidelity_result(source_key: str, corpus_key: str, spec: QuantSpec | str, tokens: int, _float, _quant, _ids):
    with heavy_turn("fidelity_result", source_key, corpus_key, spec, tokens):
        bar, report = progress_bar("Comparing outputs")
        result = output_fidelity(_float, _quant, _ids, max_tokens=tokens, progress=report)
    bar.empty()
    return result


@st.cache_data(show_spinner=False, max_entries=32)
def next_words(source_key: str, spec: QuantSpec, prompt: str, k: int, _float, _quant, _dictionary):
    return next_words_pair(_float, _quant, _dictionary, prompt, k)


@st.cache_data(show_spinner=False, max_entries=32)
def surprisal(source_key: str, spec: QuantSpec, text: str, _float, _quant, _dictionary):
    return surprisal_pair(_float, _quant, _dictionary, text)


@st.cache_data(show_spinner="Measuring every weight…", max_entries=16)
def sqnr_table(source_key: str, spec: QuantSpec, _float, _quant):
    return weight_sqnr(_float, _quant)


@st.cache_data(show_spinner=False, max_entries=32)
def histogram(source_key: str, spec: QuantSpec, name: str, _float, _quant):
    return weight_histogram(_float, _quant, name)
