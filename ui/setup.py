"""The sidebar and what it sets up: the model source, the quantization spec, threads and seed (mirrored in
the link's query parameters), then the loaded model, its quantized variant and the corpus, as one ``Setup``."""
from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import streamlit as st

from wlm import hosting
from wlm.bundle import WEIGHTS_FILE
from wlm.checkpoint import check_upload_size, default_model_path, upload_limit_mb
from wlm.corpus import resolve_data_dir
from wlm.errors import WlmError
from wlm.quantize import DTYPES, PRESETS, QuantSpec

from .backend import CPUS, load_corpus, load_source, quantized_variant
from .requests import CorpusSource, ModelSource, Setup, Vocabulary
from .widgets import SessionPage

SOURCES = {"bundled": "Bundled model", "path": "A .pth file by path", "upload": "Upload a checkpoint"}
CUSTOM = "custom"
MAX_SEED = 2**31 - 1
OPEN_TAB = "open_tab"  # session state: the open tab's title (Streamlit's own tab state)
WALKTHROUGH = "Walkthrough"
# Settings only some tabs read: a link carries them only while one of those tabs is open. The Walkthrough's
# 'step' is its own (it writes it), and every other setting describes the model every tab works on.
READ_BY = {"seed": ("Generate", "Fewer bits", WALKTHROUGH, "Which parts"), "threads": ("Speed & accuracy", "Fidelity")}
DEFAULTS = {"source": "bundled", "path": "word_language_model_quantize.pth", "preset": "tutorial", "lstm": True,
            "linear": True, "embedding": False, "embedding_bits": 8, "dtype": "qint8", "per_channel": False,
            "threads": 1, "seed": 0}
# A setting's name in a link where it is shorter than in the code (links stay short, and old links keep working);
# the others are spelled alike. The sidebar's widgets are keyed by the setting's name.
IN_LINKS = {"source": "src", "path": "pth", "embedding": "emb", "embedding_bits": "bits", "per_channel": "pc"}


def link_name(setting: str) -> str:
    return IN_LINKS.get(setting, setting)


# --- the sidebar and the link ----------------------------------------------------------------

def _parse(key: str, raw: str):
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    return raw


def init_from_query_params(hosted: bool = False) -> None:
    """On a session's first run, widgets start from the link's query parameters (unknown or bad ones are ignored).

    A hosted server opens no path a link names: ``src=path`` falls back to the bundled model (the path is
    never looked at) with a note, and measurements run on one thread whatever ``threads`` says."""
    if "_initialised" in st.session_state:
        return
    st.session_state["_initialised"] = True
    for key, default in DEFAULTS.items():
        value = default
        if link_name(key) in st.query_params:
            try:
                value = _parse(key, st.query_params[link_name(key)])
            except ValueError:
                value = default
        st.session_state[key] = value
    if st.session_state["source"] not in SOURCES:
        st.session_state["source"] = "bundled"
    choice = hosting.choose_source(st.session_state["source"], hosted)
    st.session_state["source"], st.session_state["_source_note"] = choice.source, choice.note
    if st.session_state["dtype"] not in DTYPES:
        st.session_state["dtype"] = "qint8"
    if st.session_state["embedding_bits"] not in (8, 4):
        st.session_state["embedding_bits"] = 8
    st.session_state["threads"] = hosting.THREADS if hosted else min(max(1, st.session_state["threads"]), CPUS)
    if "seed" in st.query_params and st.session_state["seed"] == DEFAULTS["seed"] != _seed_in_link():
        st.session_state[SEED_NOTE] = seed_note(st.query_params["seed"])
    if not 0 <= st.session_state["seed"] <= MAX_SEED:  # the seed box's range, for a link that names another
        st.session_state[SEED_NOTE] = seed_note(st.query_params["seed"])
        st.session_state["seed"] = DEFAULTS["seed"]
    if st.session_state["preset"] in PRESETS and "lstm" not in st.query_params:
        apply_preset()  # a link that names a preset but no toggles means that preset
    sync_preset()


SEED_NOTE = "_seed_note"  # session state: why the link's seed was not used


def _seed_in_link():
    try:
        return int(st.query_params["seed"])
    except ValueError:
        return None


def seed_note(raw: str) -> str:
    return (f"The link's seed ({raw[:30]}) is not a whole number from 0 to {MAX_SEED:,}, so seed "
            f"{DEFAULTS['seed']} is used; choose another in the box.")


def tab_slug(title: str) -> str:
    """A tab's name as a link writes it: ``Speed & accuracy`` -> ``speed-accuracy``."""
    return "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())


def open_tabs(titles: list[str]) -> dict:
    """The tabs, as Streamlit's stateful tabs: only the open one runs, and switching reruns the page. A
    session's first run opens the tab its link names (``?tab=fidelity``; ``?step=N`` alone means the
    Walkthrough); afterwards the visitor's clicks decide. Returns {title: tab container}."""
    if OPEN_TAB not in st.session_state:
        by_slug = {tab_slug(t): t for t in titles}
        wanted = by_slug.get(tab_slug(str(st.query_params.get("tab", ""))))
        if wanted is None and "step" in st.query_params and WALKTHROUGH in titles:
            wanted = WALKTHROUGH
        st.session_state[OPEN_TAB] = wanted or titles[0]
    return dict(zip(titles, st.tabs(titles, key=OPEN_TAB, on_change="rerun")))


def _link(config: dict, tab: str) -> dict[str, str]:
    """The query parameters of a link that opens ``tab`` with this setup, and nothing that tab does not read."""
    shown = {key: value for key, value in config.items() if key in DEFAULTS
             and (key != "path" or config["source"] == "path")
             and tab in READ_BY.get(key, (tab,))}
    params = {link_name(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in shown.items()}
    params["tab"] = tab_slug(tab)
    return params


def link_params(config: dict, open_tab: str) -> None:
    """The address bar, as a link that opens the open tab with this setup."""
    params = _link(config, open_tab)
    if open_tab == WALKTHROUGH and "step" in st.query_params:
        params["step"] = st.query_params["step"]  # the card on screen: the Walkthrough keeps it current
    st.query_params.from_dict(params)


def link_to_tab(title: str) -> str:
    """A relative link to this page with the sidebar's setup, opening on tab ``title`` (with what it reads, such
    as the thread count, which the open tab's own address may leave out)."""
    config = {key: st.session_state.get(key, default) for key, default in DEFAULTS.items()}
    return "?" + urlencode(_link(config, title))


def spec_from_state() -> QuantSpec:
    s = st.session_state
    return QuantSpec(lstm=s["lstm"], linear=s["linear"], embedding=s["embedding"], dtype=s["dtype"],
                     per_channel=s["per_channel"] and s["dtype"] == "qint8", embedding_bits=s["embedding_bits"])


def apply_preset() -> None:
    name = st.session_state["preset"]
    if name in PRESETS:
        spec = PRESETS[name]
        st.session_state.update(lstm=spec.lstm, linear=spec.linear, embedding=spec.embedding, dtype=spec.dtype,
                                per_channel=spec.per_channel, embedding_bits=spec.embedding_bits)


def sync_preset() -> None:
    if st.session_state["dtype"] != "qint8":
        st.session_state["per_channel"] = False
    spec = spec_from_state()
    st.session_state["preset"] = next((n for n, p in PRESETS.items() if p == spec), CUSTOM)


def sidebar(hosted: bool = False) -> tuple[dict, QuantSpec]:
    # The sidebar's values are set through session state (from the link, by a preset), and Streamlit sends such a
    # value to the browser only in the run that set it. A widget the browser has not drawn yet (a tab clicked while
    # the page is still drawing) reports no value; drawn later, it would start from its default and send that back
    # as the visitor's choice. A persisted widget is sent its value again in every run the browser reports none.
    sb = st.sidebar
    sb.header("Setup")
    sb.radio("Model", list(hosting.offered_sources(SOURCES, hosted)), format_func=SOURCES.get, key="source",
             persist_state="page",
             on_change=lambda: st.session_state.update(_source_note=""))  # the fallback's note was answered
    upload = None
    if st.session_state["source"] == "path":
        sb.text_input("Path of the tutorial's .pth (a state_dict)", key="path", persist_state="page")
    elif st.session_state["source"] == "upload":
        try:  # a shared server's browser refuses a file over the budget before sending it
            limit = upload_limit_mb(hosting.max_params()) if hosted else None
        except WlmError:
            limit = None  # a bad WLM_MAX_PARAMS: resolve_setup shows the error
        upload = sb.file_uploader("Checkpoint (.pth state_dict or .safetensors)", type=["pth", "pt", "safetensors"],
                                  help="Read with torch.load(weights_only=True): files that hold code are refused.",
                                  max_upload_size=limit)
    sb.subheader("Quantization")
    sb.selectbox("Preset", list(PRESETS) + [CUSTOM], key="preset", on_change=apply_preset, persist_state="page",
                 help="'tutorial' is what the PyTorch tutorial does: int8 LSTM and Linear, float embedding.")
    sb.toggle("LSTM", key="lstm", on_change=sync_preset, persist_state="page")
    sb.toggle("Linear (decoder)", key="linear", on_change=sync_preset, persist_state="page")
    sb.toggle("Embedding", key="embedding", on_change=sync_preset, persist_state="page")
    sb.radio("Embedding bits", [8, 4], key="embedding_bits", horizontal=True, on_change=sync_preset,
             persist_state="page", disabled=not st.session_state["embedding"])
    sb.radio("LSTM / Linear weights", list(DTYPES), key="dtype", horizontal=True, on_change=sync_preset,
             persist_state="page")
    sb.toggle("Per-channel (Linear, qint8)", key="per_channel", on_change=sync_preset, persist_state="page",
              disabled=st.session_state["dtype"] != "qint8")
    sb.subheader("Run")
    if hosted:
        st.session_state["threads"] = hosting.THREADS
        sb.caption(f"Threads: {hosting.THREADS}. This server is shared, and a second thread would only compete "
                   "with other visitors' measurements.")
    elif CPUS > 1:
        sb.slider("Threads", 1, CPUS, key="threads", persist_state="page",
                  help="torch.set_num_threads for speed measurements")
    sb.number_input("Seed", 0, MAX_SEED, key="seed", step=1, persist_state="page",
                    on_change=lambda: st.session_state.pop(SEED_NOTE, None),
                    help=f"A whole number from 0 to {MAX_SEED:,}: the same seed writes the same text.")
    if st.session_state.get(SEED_NOTE):
        sb.warning(st.session_state[SEED_NOTE])
    # The path box keeps its value while hidden (it persists); a setting with no state at all falls back to its default.
    config = {key: st.session_state.get(key, default) for key, default in DEFAULTS.items()}
    return {"upload": upload, "hosted": hosted, **config}, spec_from_state()


# --- the model, then the corpus --------------------------------------------------------------

def bundled_source() -> ModelSource | None:
    """The model bundled with the app (WLM_MODEL names another bundle), as every page shares it; None when the
    bundle is missing."""
    if not (default_model_path() / WEIGHTS_FILE).is_file():
        return None
    key = str(default_model_path().resolve())
    return ModelSource("bundled", key, load_source("bundled", key))


def resolve_setup(config: dict, spec: QuantSpec) -> Setup | None:
    """The model and its quantized variant, or None (with the reason shown); the corpus comes later
    (``with_corpus``)."""
    hosted = config.get("hosted", False)
    kind = hosting.choose_source(config["source"], hosted).source  # never a path on a shared server
    if kind == "bundled" and st.session_state.get("_source_note"):
        st.info(st.session_state["_source_note"])
    try:
        if kind == "upload":
            upload = config["upload"]
            if upload is None:
                st.info("Upload a checkpoint in the sidebar to begin.")
                return None
            budget = hosting.max_params() if hosted else None  # parameters; a laptop loads any size
            if budget is not None:
                check_upload_size(upload.size, upload.name, budget)  # before its bytes are read
            key = f"{upload.name}|{upload.size}|{upload.file_id}"
            source = ModelSource(kind, key, load_source("upload", key, upload.getvalue(), budget))
        elif kind == "path":
            key = str(config["path"]).strip()
            source = ModelSource(kind, key, load_source("path", key))
        else:
            source = bundled_source()
            if source is None:
                choose = "Upload a checkpoint" if hosted else "Choose a .pth file by path or upload one"
                st.error(hosting.public_message(f"The bundled model is missing ({default_model_path()}). {choose} "
                                                "in the sidebar, or set WLM_MODEL to a model bundle.", hosted))
                return None
    except WlmError as exc:
        st.error(hosting.public_message(str(exc), hosted))
        return None
    try:
        variant = quantized_variant(source, spec, _page=SessionPage())
    except WlmError as exc:  # e.g. an upload whose weights quantize to nothing usable
        st.error(hosting.public_message(str(exc), hosted))
        return None
    dictionary = source.loaded.dictionary
    vocabulary = None if dictionary is None else Vocabulary.of_source(source, dictionary)
    return Setup(variant=variant, threads=config["threads"], seed=config["seed"], vocabulary=vocabulary,
                 hosted=hosted)


def corpus_panel(hosted: bool = False) -> tuple[CorpusSource | None, str]:
    """The corpus if one is found, and otherwise what is missing and how to get it. On a shared server no
    message names the server's folders, and no visitor can make it download."""
    def public(text: str) -> str:
        return hosting.public_message(text, hosted)

    path = resolve_data_dir()
    if (path / "train.txt").is_file():
        try:
            corpus = load_corpus(str(path.resolve()))
            st.sidebar.caption(public(f"Corpus: {corpus.label} ({len(corpus.dictionary):,} words, "
                                      f"{len(corpus.test):,} test tokens)"))
            return CorpusSource(str(path.resolve()), corpus), ""
        except WlmError as exc:
            st.sidebar.error(public(str(exc)))
            return None, public(f"The corpus in {path} cannot be read: {exc}")
    # Only a WLM_DATA_DIR naming an empty or missing folder gets here: otherwise the bundled copy is found.
    missing = public(f"No corpus found at {path}, the folder WLM_DATA_DIR names. Point WLM_DATA_DIR at a folder "
                     "with Wikitext-2's train.txt, valid.txt and test.txt, or unset it to use the copy bundled "
                     "with the app.")
    st.sidebar.warning(missing)
    if not hosted and st.sidebar.button("Download Wikitext-2", help="Needs a network connection"):
        from wlm.download import download

        try:
            with st.spinner("Downloading Wikitext-2…"):
                download(path, progress=False)
            st.rerun()
        except WlmError as exc:
            st.sidebar.error(str(exc))
    return None, missing


def read_corpus_ahead() -> None:
    """Read the corpus the sidebar will find (splitting Wikitext-2 into tokens takes a fresh clone about 1.5 s of
    Python). A corpus that cannot be read is left for the sidebar to report."""
    path = resolve_data_dir()
    if (path / "train.txt").is_file():
        try:
            load_corpus(str(path.resolve()))
        except WlmError:
            pass


def with_corpus(setup: Setup) -> Setup:
    """``setup`` with the corpus and what it allows: the vocabulary (for a .pth) and the test tokens."""
    found, missing = corpus_panel(setup.hosted)
    loaded, vocabulary, split = setup.loaded, setup.vocabulary, None
    if found is not None:
        corpus = found.corpus
        if vocabulary is None and loaded.model.config.ntoken == len(corpus.dictionary):
            vocabulary = Vocabulary.of_corpus(found)
        if vocabulary is not None and vocabulary.dictionary == corpus.dictionary:
            split = found
        else:
            missing = hosting.public_message(
                f"The corpus in {corpus.path} does not match the model's vocabulary ({len(corpus.dictionary):,} vs "
                f"{loaded.model.config.ntoken:,} words); use the corpus the model was trained on to measure loss "
                "and speed.", setup.hosted)
    if vocabulary is None:
        missing = missing or "This checkpoint has no vocabulary."
        missing += " Text generation needs the vocabulary of the corpus the model was trained on."
    return replace(setup, vocabulary=vocabulary, corpus=found, split=split, missing=missing)
