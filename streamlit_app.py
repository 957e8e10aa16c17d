"""Dynamic quantization of an LSTM language model, interactively.

Run with ``streamlit run streamlit_app.py``. This file only lays out controls and results: the
measurements come from ``wlm`` and the charts from ``wlm.charts``. Loaded models and the corpus are
shared by every session (``st.cache_resource``); measured results are reused (``st.cache_data``).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import streamlit as st

# A fresh server's first run spends about 1.5 s importing torch, pandas and Altair; the page's
# frame goes out first, so a class looks at a title and a note rather than a blank tab.
st.set_page_config(page_title="Quantizing an LSTM language model", page_icon="🧮", layout="wide")
st.title("Dynamic quantization of an LSTM language model")
starting = st.empty()
if "torch" not in sys.modules:
    starting.caption("Starting up: loading PyTorch and the model…")

import pandas as pd
import torch

import wlm  # noqa: F401  (quantization warning filters)
from wlm import charts, explore
from wlm.checkpoint import WEIGHTS_FILE, LoadedModel, default_model_path, load_checkpoint_bytes, load_model
from wlm.compare import compare_variants, engine_labels
from wlm.corpus import Corpus, Dictionary, resolve_data_dir
from wlm.errors import WlmError
from wlm.evaluate import num_threads
from wlm.export import load_note, quantized_bytes
from wlm.fidelity import compare_outputs, quantized_weights, weight_histogram, weight_sqnr
from wlm.generate import MAX_WORDS, first_difference, generate, generate_side_by_side
from wlm.onnx_engine import onnx_model
from wlm.quantize import PRESETS, QuantSpec, quantize, weights_per_part

SOURCES = {"bundled": "Bundled model", "path": "A .pth file by path", "upload": "Upload a checkpoint"}
CUSTOM = "custom"
MAX_APP_WORDS = min(1000, MAX_WORDS)
CPUS = os.cpu_count() or 1
DEFAULTS = {"src": "bundled", "pth": "word_language_model_quantize.pth", "preset": "tutorial", "lstm": True,
            "linear": True, "emb": False, "bits": 8, "dtype": "qint8", "pc": False, "threads": 1, "seed": 0}


# --- shared, cached resources ----------------------------------------------------------------

@st.cache_resource(show_spinner="Reading the corpus…", max_entries=2)
def load_corpus(path: str) -> Corpus:
    corpus = Corpus(path)
    explore.release_memory()  # the word lists read on the way are gone
    return corpus


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def load_source(kind: str, location: str, _data: bytes | None = None) -> LoadedModel:
    """The float model of a source; ``location`` identifies an upload (name, size, id) when ``_data`` is given."""
    if kind == "upload":
        loaded = load_checkpoint_bytes(_data, location.split("|", 1)[0])
    else:
        loaded = load_model(None if kind == "bundled" else location)
    explore.release_memory()
    return loaded


@st.cache_resource(max_entries=3)
def quantized_parts(source_key: str) -> dict:
    """Quantized parts of a source's model, lent from one variant to the next (7 kinds at most:
    8- or 4-bit embedding, qint8 or float16 LSTM, three decoders), so a toggle quantizes only what changed."""
    return {}


@st.cache_resource(show_spinner="Quantizing…", max_entries=3)
def quantized_variant(source_key: str, spec: QuantSpec, _model: torch.nn.Module) -> torch.nn.Module:
    """The quantized variant of a source's model (float parts shared with it); 3 variants are kept at most."""
    variant = quantize(_model, spec, quantized_parts(source_key))
    explore.release_memory()  # the temporary copies of the quantized parts
    return variant


@st.cache_resource
def use_one_thread() -> None:
    # One word at a time through a batch-1 LSTM is too little work to split across threads; extra
    # threads only wait on each other, and on a busy machine they make generation many times slower.
    # Speed measurements set their own count (sidebar) for their duration.
    torch.set_num_threads(1)


@st.cache_resource
def timing_lock() -> threading.Lock:
    # torch's thread count is process-wide, and timings taken while another session computes are
    # meaningless; speed measurements therefore run one at a time.
    return threading.Lock()


# --- measured results (reused across reruns and sessions) ------------------------------------

@st.cache_data(show_spinner=False, max_entries=32)
def _sizes_of(source_key: str, label: str, spec: QuantSpec, _model):
    sizes = explore.size_by_part({label: _model})
    explore.release_memory()  # the serialized copies measured
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
    with timing_lock(), num_threads(1):
        return explore.tokens_for_seconds(_model, _ids, 5.0 / 1.5)


def _progress_bar(text: str):
    bar = st.progress(0.0, text=text)
    return bar, (lambda done, total: bar.progress(min(1.0, done / total), text=f"{text} {done:,}/{total:,} tokens"))


@st.cache_data(show_spinner=False, max_entries=16)
def variant_table(source_key: str, corpus_key: str, specs: tuple[QuantSpec, ...], tokens: int, threads: int,
                  _model, _ids, engines: tuple[str, ...] = ("torch",)):
    bar, report = _progress_bar("Evaluating")
    with timing_lock():
        table = compare_variants(_model, _ids, list(specs), max_tokens=tokens, threads=threads, engines=engines,
                                 progress=lambda label, done, total: report(done, total))
    bar.empty()
    explore.release_memory()  # each variant was a temporary copy
    return table


@st.cache_data(show_spinner=False, max_entries=8)
def sweep_table(source_key: str, corpus_key: str, spec: QuantSpec, tokens: int, _model, _ids):
    with st.spinner("Timing every thread count…"), timing_lock():
        sweep = explore.thread_sweep(_model, _ids, [PRESETS["fp32"], spec], list(range(1, CPUS + 1)), tokens)
    explore.release_memory()
    return sweep


@st.cache_data(show_spinner=False, max_entries=8)
def tradeoff_table(source_key: str, corpus_key: str, tokens: int, threads: int, _model, _ids):
    bar, report = _progress_bar("Evaluating every preset")
    with timing_lock():
        table = compare_variants(_model, _ids, list(PRESETS), max_tokens=tokens, threads=threads,
                                 progress=lambda label, done, total: report(done, total))
    bar.empty()
    explore.release_memory()
    return explore.with_delta_loss(table)


@st.cache_resource(show_spinner="Exporting to ONNX and quantizing (once per model)…", max_entries=2)
def onnx_int8(source_key: str, _model):
    """ONNX Runtime's int8 model of a source (files cached on disk, the session shared here)."""
    return onnx_model(_model, "int8", threads=1)


@st.cache_data(show_spinner=False, max_entries=16)
def fidelity_result(source_key: str, corpus_key: str, spec: QuantSpec | str, tokens: int, _float, _quant, _ids):
    bar, report = _progress_bar("Comparing outputs")
    result = compare_outputs(_float, _quant, _ids, max_tokens=tokens, progress=report)
    bar.empty()
    return result


@st.cache_data(show_spinner=False, max_entries=32)
def next_words(source_key: str, spec: QuantSpec, prompt: str, k: int, _float, _quant, _dictionary):
    return explore.compare_next_words(_float, _quant, _dictionary, prompt, k)


@st.cache_data(show_spinner=False, max_entries=32)
def surprisal(source_key: str, spec: QuantSpec, text: str, _float, _quant, _dictionary):
    return explore.surprisal_pair(_float, _quant, _dictionary, text)


@st.cache_data(show_spinner="Measuring every weight…", max_entries=16)
def sqnr_table(source_key: str, spec: QuantSpec, _float, _quant):
    return weight_sqnr(_float, _quant)


@st.cache_data(show_spinner=False, max_entries=32)
def histogram(source_key: str, spec: QuantSpec, name: str, _float, _quant):
    return weight_histogram(_float, _quant, name)


# --- the session's setup ---------------------------------------------------------------------

@dataclass
class Setup:
    source_key: str
    loaded: LoadedModel
    spec: QuantSpec
    quant: torch.nn.Module
    dictionary: Dictionary | None
    corpus: Corpus | None
    corpus_key: str
    test_ids: torch.Tensor | None
    missing: str  # why corpus-based measurements are off ('' when they are on)
    threads: int
    seed: int

    @property
    def model(self):
        return self.loaded.model


def _parse(key: str, raw: str):
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    return raw


def init_from_query_params() -> None:
    """On a session's first run, widgets start from the link's query parameters (unknown or bad ones are ignored)."""
    if "_initialised" in st.session_state:
        return
    st.session_state["_initialised"] = True
    for key, default in DEFAULTS.items():
        value = default
        if key in st.query_params:
            try:
                value = _parse(key, st.query_params[key])
            except ValueError:
                value = default
        st.session_state[key] = value
    if st.session_state["src"] not in SOURCES:
        st.session_state["src"] = "bundled"
    if st.session_state["dtype"] not in ("qint8", "float16"):
        st.session_state["dtype"] = "qint8"
    if st.session_state["bits"] not in (8, 4):
        st.session_state["bits"] = 8
    st.session_state["threads"] = min(max(1, st.session_state["threads"]), CPUS)
    if st.session_state["preset"] in PRESETS and "lstm" not in st.query_params:
        apply_preset()  # a link that names a preset but no toggles means that preset
    sync_preset()


def spec_from_state() -> QuantSpec:
    s = st.session_state
    return QuantSpec(lstm=s["lstm"], linear=s["linear"], embedding=s["emb"], dtype=s["dtype"],
                     per_channel=s["pc"] and s["dtype"] == "qint8", embedding_bits=s["bits"])


def apply_preset() -> None:
    name = st.session_state["preset"]
    if name in PRESETS:
        spec = PRESETS[name]
        st.session_state.update(lstm=spec.lstm, linear=spec.linear, emb=spec.embedding, dtype=spec.dtype,
                                pc=spec.per_channel, bits=spec.embedding_bits)


def sync_preset() -> None:
    if st.session_state["dtype"] != "qint8":
        st.session_state["pc"] = False
    spec = spec_from_state()
    st.session_state["preset"] = next((n for n, p in PRESETS.items() if p == spec), CUSTOM)


def sidebar() -> tuple[dict, QuantSpec]:
    sb = st.sidebar
    sb.header("Setup")
    sb.radio("Model", list(SOURCES), format_func=SOURCES.get, key="src")
    upload = None
    if st.session_state["src"] == "path":
        sb.text_input("Path of the tutorial's .pth (a state_dict)", key="pth")
    elif st.session_state["src"] == "upload":
        upload = sb.file_uploader("Checkpoint (.pth state_dict or .safetensors)", type=["pth", "pt", "safetensors"],
                                  help="Read with torch.load(weights_only=True): files that hold code are refused.")
    sb.subheader("Quantization")
    sb.selectbox("Preset", list(PRESETS) + [CUSTOM], key="preset", on_change=apply_preset,
                 help="'tutorial' is what the PyTorch tutorial does: int8 LSTM and Linear, float embedding.")
    sb.toggle("LSTM", key="lstm", on_change=sync_preset)
    sb.toggle("Linear (decoder)", key="linear", on_change=sync_preset)
    sb.toggle("Embedding", key="emb", on_change=sync_preset)
    sb.radio("Embedding bits", [8, 4], key="bits", horizontal=True, on_change=sync_preset,
             disabled=not st.session_state["emb"])
    sb.radio("LSTM / Linear weights", ["qint8", "float16"], key="dtype", horizontal=True, on_change=sync_preset)
    sb.toggle("Per-channel (Linear, qint8)", key="pc", on_change=sync_preset,
              disabled=st.session_state["dtype"] != "qint8")
    sb.subheader("Run")
    if CPUS > 1:
        sb.slider("Threads", 1, CPUS, key="threads", help="torch.set_num_threads for speed measurements")
    sb.number_input("Seed", 0, 2**31 - 1, key="seed", step=1)
    # A widget that was not drawn this run (the path box) has no state; fall back to its default.
    config = {key: st.session_state.get(key, default) for key, default in DEFAULTS.items()}
    # The address bar mirrors the setup, so a copied link opens the same one.
    st.query_params.from_dict({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()
                               if k != "pth" or config["src"] == "path"})
    return {"upload": upload, **config}, spec_from_state()


def corpus_panel() -> tuple[Corpus | None, str, str]:
    """The corpus if one is found, its cache key, and otherwise what is missing and how to get it."""
    path = resolve_data_dir()
    if (path / "train.txt").is_file():
        try:
            corpus = load_corpus(str(path.resolve()))
            st.sidebar.caption(f"Corpus: {path} ({len(corpus.dictionary):,} words, {len(corpus.test):,} test tokens)")
            return corpus, str(path.resolve()), ""
        except WlmError as exc:
            st.sidebar.error(str(exc))
            return None, "", f"The corpus in {path} cannot be read: {exc}"
    missing = (f"No corpus found at {path}. Set WLM_DATA_DIR to a folder with Wikitext-2's train.txt, valid.txt "
               "and test.txt, or put them in ./data/wikitext-2 (`python -m wlm download` fetches them).")
    st.sidebar.warning(missing)
    if st.sidebar.button("Download Wikitext-2", help="Needs a network connection"):
        from wlm.download import download

        try:
            with st.spinner("Downloading Wikitext-2…"):
                download(path, progress=False)
            st.rerun()
        except WlmError as exc:
            st.sidebar.error(str(exc))
    return None, "", missing


def resolve_setup(config: dict, spec: QuantSpec) -> Setup | None:
    """The model and its quantized variant; the corpus is attached later (``attach_corpus``)."""
    kind = config["src"]
    try:
        if kind == "upload":
            upload = config["upload"]
            if upload is None:
                st.info("Upload a checkpoint in the sidebar to begin.")
                return None
            key = f"{upload.name}|{upload.size}|{upload.file_id}"
            loaded = load_source("upload", key, upload.getvalue())
        elif kind == "path":
            key = str(config["pth"]).strip()
            loaded = load_source("path", key)
        else:
            if not (default_model_path() / WEIGHTS_FILE).is_file():
                st.error(f"The bundled model is missing ({default_model_path()}). Choose a .pth file by path or "
                         "upload one in the sidebar, or set WLM_MODEL to a model bundle.")
                return None
            key = str(default_model_path().resolve())
            loaded = load_source("bundled", key)
    except WlmError as exc:
        st.error(str(exc))
        return None
    quant = quantized_variant(f"{kind}:{key}", spec, loaded.model)
    return Setup(f"{kind}:{key}", loaded, spec, quant, loaded.dictionary, None, "", None, "",
                 config["threads"], config["seed"])


def attach_corpus(setup: Setup) -> None:
    """Find the corpus and decide what it allows: the vocabulary (for a .pth) and the test tokens."""
    corpus, corpus_key, missing = corpus_panel()
    loaded, dictionary, test_ids = setup.loaded, setup.loaded.dictionary, None
    if corpus is not None:
        if dictionary is None and loaded.model.config.ntoken == len(corpus.dictionary):
            dictionary = corpus.dictionary
        if dictionary is not None and dictionary == corpus.dictionary:
            test_ids = corpus.test
        else:
            missing = (f"The corpus in {corpus.path} does not match the model's vocabulary "
                       f"({len(corpus.dictionary):,} vs {loaded.model.config.ntoken:,} words); use the corpus the "
                       "model was trained on to measure loss and speed.")
    if dictionary is None:
        missing = missing or "This checkpoint has no vocabulary."
        missing += " Text generation needs the vocabulary of the corpus the model was trained on."
    setup.dictionary, setup.corpus, setup.corpus_key, setup.test_ids, setup.missing = (
        dictionary, corpus, corpus_key, test_ids, missing)


def show(figure: charts.Figure) -> None:
    st.altair_chart(figure.chart, width="stretch")
    st.caption(f"**Takeaway:** {figure.takeaway}")


def remembered_button(label: str, key: str, request) -> bool:
    """True when the button was just pressed, or was pressed earlier for this same request."""
    if st.button(label, key=key):
        st.session_state[f"{key}_request"] = request
    return st.session_state.get(f"{key}_request") == request


def token_slider(label: str, total: int, default: int, key: str, help: str | None = None) -> int:
    """A slider over a prefix of the test split, in steps of 100 tokens (of 1 for a tiny split)."""
    step = 100 if total >= 1000 else 1
    low = min(step, total - 1) if step > 1 else 2
    return int(st.slider(label, low, total, max(low, min(default, total)), step, key=key, help=help))


def need_corpus(setup: Setup) -> bool:
    if setup.test_ids is None:
        st.info(setup.missing)
        return False
    return True


# --- sections --------------------------------------------------------------------------------

def model_section(setup: Setup) -> None:
    spec, model, quant = setup.spec, setup.model, setup.quant
    st.caption(f"Source: {setup.loaded.source} · quantization: **{spec.label}**")
    sizes = part_sizes(setup.source_key, spec, model, quant)
    table = explore.part_table(sizes, weights_of(setup.source_key, model), spec)
    total = table.loc["total"]
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{total['weights']:,}", help="The same in both models: quantizing changes how "
                   "weights are stored, not how many there are.")
    cols[1].metric("Float size", charts.format_mb(total["float_mb"]))
    cols[2].metric("Quantized size", charts.format_mb(total["quantized_mb"]),
                   delta=f"{100 * (total['quantized_mb'] / total['float_mb'] - 1):+.0f} %", delta_color="inverse")
    cols[3].metric("Ratio", f"×{total['float_mb'] / total['quantized_mb']:.2f}")
    show(charts.size_chart(sizes))
    # A static table: nothing to scroll on a projector, and the first page does not wait for the
    # interactive data grid's scripts. The architectures are plain text, as print(model) shows them.
    shown = table.rename(columns={"float_mb": "float", "quantized_mb": "quantized",
                                  "quantized_storage": "quantized model stores"})
    st.table(shown.style.format({"weights": "{:,}", "float": charts.format_mb, "quantized": charts.format_mb}))
    left, right = st.columns(2)
    with left.expander("Float architecture"):
        st.text(str(model))
    with right.expander("Quantized architecture"):
        st.text(str(quant))
    file_name = f"wlm-{spec.label.replace(' ', '-').replace('+', '_')}.pt"
    st.download_button("Download the quantized model", data=lambda: quantized_bytes(quant),
                       file_name=file_name, mime="application/octet-stream", on_click="ignore",
                       help="torch.save of its state_dict (LSTM weights as plain tensors)")
    st.caption("Load it back (no code runs: the file is read with torch.load(weights_only=True)):")
    st.code(load_note(model.config, spec, file_name), language="python")


def _markdown_word(word: str) -> str:
    if word == "<eos>":
        return "  \n"
    escaped = "".join("\\" + c if c in "\\`*_[]<>#|~$" else c for c in word)
    return escaped + " "


def generate_section(setup: Setup) -> None:
    if setup.dictionary is None:
        st.info(setup.missing)
        return
    c1, c2, c3 = st.columns([2, 1, 3])
    temperature = c1.slider("Temperature (0 = greedy)", 0.0, 2.0, 1.0, 0.05, key="gen_temperature")
    words = c2.number_input("Words", 1, MAX_APP_WORDS, 100, key="gen_words")
    prompt = c3.text_input("Prompt (optional)", key="gen_prompt")
    st.caption(f"Seed {setup.seed} (sidebar). Both models draw the same random numbers.")
    unknown = [w for w in prompt.split() if w not in setup.dictionary.word2idx]
    if unknown:
        st.warning(f"Not in the vocabulary (read as <unk>): {', '.join(unknown[:10])}")
    request = (setup.source_key, setup.spec, int(words), float(temperature), setup.seed, prompt)
    pressed = st.button("Generate", key="gen_go", type="primary")
    left, right = st.columns(2)
    left.markdown("**float**")
    right.markdown(f"**quantized ({setup.spec.label})**")
    float_box, quant_box = left.empty(), right.empty()
    if pressed:
        # Both models write at once (a thread each) and the page shows their words as they come;
        # the finished pair is then shown with its divergence.
        kwargs = dict(words=int(words), temperature=float(temperature), seed=setup.seed, prompt=prompt)
        boxes = {"float": float_box, "quantized": quant_box}
        texts: dict[str, list[str]] = {name: [] for name in boxes}
        seconds: dict[str, float] = {}
        try:
            shown = time.perf_counter()
            for step in generate_side_by_side({"float": setup.model, "quantized": setup.quant}, setup.dictionary,
                                              **kwargs):
                if step.word is None:
                    seconds[step.model] = step.seconds
                else:
                    texts[step.model].append(step.word)
                # One page update per 0.25 s for both texts, not a message per word: redrawing
                # costs the browser, which shares the machine with the models on a laptop demo.
                if step.word is None or time.perf_counter() - shown >= 0.25:
                    for name, box in boxes.items():
                        box.markdown("".join(_markdown_word(w) for w in texts[name]))
                    shown = time.perf_counter()
        except WlmError as exc:
            st.error(str(exc))
            return
        st.session_state["gen_result"] = {**texts, "seconds": seconds, "request": request,
                                          "first_difference": first_difference(*texts.values())}
    result = st.session_state.get("gen_result")
    if not result or result["request"] != request:
        return
    first = result["first_difference"]
    float_box.markdown(charts.paired_html(result["float"], first, result["quantized"]), unsafe_allow_html=True)
    quant_box.markdown(charts.paired_html(result["quantized"], first, result["float"]), unsafe_allow_html=True)
    st.caption(f"**Takeaway:** {charts.divergence_takeaway(len(result['float']), first)} "
               f"{charts.generation_speed_note(len(result['float']), result['seconds'], setup.spec.label)}")


def _selected_specs(setup: Setup, names: list[str]) -> tuple[QuantSpec, ...]:
    specs = [PRESETS[n] for n in names]
    if not setup.spec.is_float and setup.spec not in specs:
        specs.insert(0, setup.spec)
    return tuple(specs)


def speed_section(setup: Setup) -> None:
    if not need_corpus(setup):
        return
    default = default_tokens(setup.source_key, setup.corpus_key, setup.model, setup.test_ids)
    tokens = token_slider("Test tokens to evaluate", len(setup.test_ids), default, "speed_tokens",
                          help="The default takes about 5 s here for float and the tutorial's variant.")
    names = st.multiselect("Variants (the sidebar's setup is always included)", [n for n in PRESETS if n != "fp32"],
                           default=["tutorial"], key="speed_variants")
    specs = _selected_specs(setup, names)
    with_ort = st.checkbox("Also run ONNX Runtime (its float export and its int8 quantize_dynamic model)",
                           key="speed_ort", help="Same tokens, same harness and thread count; size is the .onnx file.")
    engines = ("torch", "onnxruntime") if with_ort else ("torch",)
    request = (setup.source_key, setup.corpus_key, specs, int(tokens), setup.threads)
    if remembered_button("Run evaluation", "speed_go", (*request, engines)):
        try:
            table = engine_labels(variant_table(*request, setup.model, setup.test_ids, engines))
        except WlmError as exc:
            st.error(str(exc))
            return
        st.dataframe(table.style.format({"size_mb": "{:.2f}", "loss": "{:.4f}", "ppl": "{:.2f}", "seconds": "{:.2f}",
                                         "tokens_per_s": "{:,.0f}", "speedup": "{:.2f}×"}),
                     hide_index=True)
        a, b = st.columns(2)
        with a:
            show(charts.variants_size_chart(table))
        with b:
            show(charts.throughput_chart(table))
    st.subheader("Threads")
    sweep_spec = setup.spec if not setup.spec.is_float else PRESETS["tutorial"]
    sweep_tokens = max(min(len(setup.test_ids), 100), int(tokens) // 4)
    st.caption(f"Float vs {sweep_spec.label} at 1 … {CPUS} threads on {sweep_tokens:,} tokens.")
    sweep_request = (setup.source_key, setup.corpus_key, sweep_spec, sweep_tokens)
    if remembered_button("Sweep threads", "sweep_go", sweep_request):
        show(charts.thread_chart(sweep_table(*sweep_request, setup.model, setup.test_ids)))


def _default_prompt(dictionary: Dictionary) -> str:
    wanted = "the history of the"
    return wanted if all(w in dictionary.word2idx for w in wanted.split()) else dictionary.idx2word[0]


def fidelity_section(setup: Setup) -> None:
    if setup.spec.is_float:
        st.info("Nothing is quantized: switch on LSTM, Linear or Embedding in the sidebar to compare.")
        return
    args = (setup.model, setup.quant)
    if setup.dictionary is not None:
        st.subheader("Next word")
        c1, c2 = st.columns([3, 1])
        prompt = c1.text_input("Prompt", _default_prompt(setup.dictionary), key="fid_prompt")
        k = c2.slider("Top k", 3, 20, 8, key="fid_k")
        try:
            show(charts.next_word_chart(next_words(setup.source_key, setup.spec, prompt, k, *args, setup.dictionary)))
        except WlmError as exc:
            st.error(str(exc))
    else:
        st.info(setup.missing)

    st.subheader("Output agreement")
    if need_corpus(setup):
        tokens = token_slider("Test tokens", len(setup.test_ids), 2000, "fid_tokens")
        against = st.radio("Float model against", [f"PyTorch {setup.spec.label}", "ONNX Runtime int8"],
                           horizontal=True, key="fid_engine")
        ort = against.startswith("ONNX")
        request = (setup.source_key, setup.corpus_key, "onnxruntime int8" if ort else setup.spec, int(tokens))
        if remembered_button("Compare outputs", "kl_go", request):
            try:
                other = onnx_int8(setup.source_key, setup.model) if ort else setup.quant
                result = fidelity_result(*request, setup.model, other, setup.test_ids)
            except WlmError as exc:
                st.error(str(exc))
            else:
                c = st.columns(4)
                c[0].metric("Top-1 agreement", f"{result.top1_agreement:.2%}")
                c[1].metric("Mean KL (nats)", f"{result.kl_mean:.2g}")
                c[2].metric("p99 KL", f"{result.kl_p99:.2g}")
                c[3].metric("Δ loss", f"{result.delta_loss:+.4f}")
                show(charts.kl_chart(result))

    st.subheader("Weights")
    if remembered_button("Measure weight error", "sqnr_go", (setup.source_key, setup.spec)):
        show(charts.sqnr_chart(sqnr_table(setup.source_key, setup.spec, *args)))
        names = list(quantized_weights(setup.quant))
        if names:
            name = st.selectbox("Weight for the histogram", names, key="hist_name")
            show(charts.histogram_chart(histogram(setup.source_key, setup.spec, name, *args)))

    st.subheader("How surprised is each model?")
    if setup.dictionary is not None:
        text = st.text_area("Paste any text", "the cat sat on the mat and the dog ran", key="sur_text")
        try:
            table = surprisal(setup.source_key, setup.spec, text, *args, setup.dictionary)
            st.markdown(charts.surprisal_html(table), unsafe_allow_html=True)
            st.caption(f"**Takeaway:** {charts.surprisal_takeaway(table)} Darker = more surprised (per-word loss).")
        except WlmError as exc:
            st.error(str(exc))

    st.subheader("Which variant to pick")
    if need_corpus(setup):
        tokens = st.session_state.get("speed_tokens") or min(1000, len(setup.test_ids))
        st.caption(f"Every preset on {tokens:,} test tokens (the Speed & accuracy slider), {setup.threads} thread(s).")
        request = (setup.source_key, setup.corpus_key, int(tokens), setup.threads)
        if remembered_button("Measure all presets", "trade_go", request):
            show(charts.tradeoff_chart(tradeoff_table(*request, setup.model, setup.test_ids)))


def walkthrough_section(setup: Setup) -> None:
    st.markdown("The steps of PyTorch's dynamic quantization tutorial, one at a time, on the model loaded now.")
    config = setup.model.config
    steps = [
        ("1. Define the model", "An embedding turns each word id into a vector, a stack of LSTM layers reads the "
         f"words in order, and a linear layer scores every word of the vocabulary as the next one. Here: "
         f"{config.ntoken:,} words, {config.ninp}-wide embedding, {config.nlayers} LSTM layers of {config.nhid}."),
        ("2. Load the data", "Wikitext-2, split into words; each line ends with an end-of-line token."),
        ("3. Load the pretrained weights", f"Weights come from {setup.loaded.source}."),
        ("4. Generate text", "Feed a word, sample the next from the predicted distribution, repeat."),
        ("5. Quantize", "Dynamic quantization stores weights as 8-bit integers and quantizes activations on the "
         "fly; only the layers chosen in the sidebar change."),
        ("6. Compare size", "The saved state_dict before and after."),
        ("7. Compare speed and loss", "Both models score the same test tokens; the tutorial uses one thread."),
    ]
    for index, (title, text) in enumerate(steps):
        with st.container(border=True):
            st.markdown(f"**{title}**  \n{text}")
            if not st.button("Run this step", key=f"walk_{index}") and not st.session_state.get(f"walk_done_{index}"):
                continue
            st.session_state[f"walk_done_{index}"] = True
            if index == 0:
                st.write(f"{sum(weights_of(setup.source_key, setup.model).values()):,} parameters.")
                st.text(str(setup.model))
            elif index == 1:
                if setup.corpus is None:
                    st.info(setup.missing)
                else:
                    c = setup.corpus
                    st.write(f"{len(c.dictionary):,} distinct words; {len(c.train):,} training, {len(c.valid):,} "
                             f"validation and {len(c.test):,} test tokens.")
            elif index == 2:
                card = setup.loaded.card or {}
                st.write({k: v for k, v in card.items() if k not in ("weights_sha256",)} or "No model card.")
            elif index == 3:
                if setup.dictionary is None:
                    st.info(setup.missing)
                else:
                    words = list(generate(setup.model, setup.dictionary, words=40, temperature=1.0, seed=setup.seed))
                    st.markdown(charts.paired_html(words, None), unsafe_allow_html=True)
            elif index == 4:
                st.text(str(setup.quant))
            elif index == 5:
                sizes = part_sizes(setup.source_key, setup.spec, setup.model, setup.quant)
                show(charts.size_chart(sizes))
            elif index == 6 and need_corpus(setup):
                tokens = min(500, len(setup.test_ids))
                request = (setup.source_key, setup.corpus_key, _selected_specs(setup, []), tokens, 1)
                table = variant_table(*request, setup.model, setup.test_ids)
                st.dataframe(table, hide_index=True)
                show(charts.throughput_chart(table))


def main() -> None:
    use_one_thread()
    init_from_query_params()
    config, spec = sidebar()
    setup = resolve_setup(config, spec)
    starting.empty()
    if setup is None:
        corpus_panel()
        return
    tabs = st.tabs(["Model", "Generate", "Speed & accuracy", "Fidelity", "Walkthrough"])
    sections = (model_section, generate_section, speed_section, fidelity_section, walkthrough_section)
    for index, (tab, section) in enumerate(zip(tabs, sections)):
        if index == 1:
            attach_corpus(setup)  # the Model section needs no corpus, so it is drawn before reading one
        with tab:
            try:
                section(setup)
            except WlmError as exc:
                st.error(str(exc))


if __name__ == "__main__":
    main()
