"""The "Fewer bits" tab: weights rounded to 8 ... 2 bits (simulated), the loss against bits, the text
falling apart, and the weight histogram on the N-bit grid. Every number comes from ``wlm.low_bits``."""
from __future__ import annotations

import streamlit as st

from wlm import charts, hosting, lesson_charts
from wlm.generate import agreement, generate
from wlm.low_bits import (
    DEFAULT_TOKENS,
    SCHEMES,
    SWEEP_BITS,
    bits_histogram,
    estimate_sweep_seconds,
    simulate,
    sweep,
    weight_names,
)

from .cached import heavy_turn, page_turn
from .setup import Setup
from .widgets import need_corpus, remembered_button, show, token_slider

MAX_TOKENS = 5 * DEFAULT_TOKENS  # a longer sweep teaches nothing more, and a slider over all 245k tokens is unusable
TEXT_WORDS, TEXT_TEMPERATURE = 80, 1.0
SIMULATED_NOTE = (
    "**Simulated.** PyTorch has no int4, int3 or int2 kernel for a dynamically quantized LSTM, so here each weight "
    "of the LSTM and the decoder (and the embedding, if you switch it on) is rounded to the nearest of 2^N levels "
    "and the model then runs in float. Activations are not rounded. At 8 bits the rounded weights are exactly the "
    "real int8 variant's, which the loss chart shows as a check.")


# --- cached work (per model, and per corpus where tokens are scored) -----------------------------

@st.cache_resource(max_entries=4)
def sweep_points(source_key: str, corpus_key: str) -> dict:
    """Losses measured so far, keyed (scheme, bits, tokens, embedding): a changed control re-measures only
    what it changes, and every session shares them."""
    return {}


@st.cache_data(show_spinner="Timing a short probe to estimate the sweep…", max_entries=16)
def sweep_estimate(source_key: str, corpus_key: str, tokens: int, embedding: bool, _model, _ids) -> float:
    with page_turn("sweep_estimate", source_key, corpus_key, tokens, embedding):
        return estimate_sweep_seconds(_model, _ids, max_tokens=tokens, embedding=embedding)


def run_sweep(source_key: str, corpus_key: str, tokens: int, embedding: bool, _model, _ids):
    points = 2 + len(SWEEP_BITS) * len(SCHEMES)  # float, real int8, then every width of both schemes
    bar = st.progress(0.0, text="Sweeping")
    seen: list[str] = []

    def progress(label: str, done: int, total: int) -> None:
        if label not in seen:
            seen.append(label)
        bar.progress(min(1.0, (len(seen) - 1 + done / max(total, 1)) / points),
                     text=f"Evaluating {label} ({len(seen)} of {points}): {done:,}/{total:,} tokens")

    with heavy_turn("run_sweep", source_key, corpus_key, tokens, embedding):
        table = sweep(_model, _ids, max_tokens=tokens, embedding=embedding, progress=progress,
                      cache=sweep_points(source_key, corpus_key))
    bar.empty()
    return table


@st.cache_resource(show_spinner="Rounding the weights…", max_entries=3)
def simulated_model(source_key: str, bits: int, scheme: str, embedding: bool, _model):
    with heavy_turn("simulated_model", source_key, bits, scheme, embedding):
        return simulate(_model, bits, scheme, embedding)


@st.cache_data(show_spinner="Writing with both models…", max_entries=32)
def paired_texts(source_key: str, bits: int, scheme: str, embedding: bool, seed: int, _model, _dictionary):
    """Float and N-bit text from the same seed (the coupled sampler), and where and how likely they part."""
    rounded = simulated_model(source_key, bits, scheme, embedding, _model)
    texts = [list(generate(m, _dictionary, words=TEXT_WORDS, temperature=TEXT_TEMPERATURE, seed=seed))
             for m in (_model, rounded)]
    return texts, agreement(_model, rounded, _dictionary, *texts, temperature=TEXT_TEMPERATURE, seed=seed)


@st.cache_data(show_spinner=False, max_entries=32)
def weight_grid(source_key: str, name: str, bits: int, scheme: str, _model):
    return bits_histogram(_model, name, bits, scheme)


def _seconds(estimate: float) -> str:
    return "under a second" if estimate < 1 else f"about {estimate:.0f} s"


# --- the page ------------------------------------------------------------------------------------

def render(setup: Setup) -> None:
    st.info(SIMULATED_NOTE)
    c1, c2, c3 = st.columns([3, 2, 2])
    bits = c1.select_slider("Weight bits", list(SWEEP_BITS), value=4, key="bits_width",
                            help="For the text and the histogram; the sweep measures every width from 8 to 2.")
    scheme = c2.radio("Scale", list(SCHEMES), key="bits_scheme", horizontal=True,
                      format_func=lambda s: {"per-tensor": "one per tensor", "per-row": "one per row"}[s])
    embedding = c3.toggle("Round the embedding too", False, key="bits_emb")

    st.subheader("Loss against bits")
    if need_corpus(setup):
        hosted = setup.hosted  # a shared server (wlm.hosting): one request kept near 30 s
        total = min(len(setup.test_ids), hosting.MAX_BITS_TOKENS if hosted else MAX_TOKENS)
        tokens = token_slider("Test tokens", total, DEFAULT_TOKENS, "bits_tokens",
                              help="Every width of both schemes, the float model and the real int8 variant are "
                                   "scored on the same first tokens of the test split.")
        if hosted:
            st.caption(f"This shared server sweeps at most {hosting.MAX_BITS_TOKENS:,} tokens, so that one request "
                       "stays near 30 s.")
        estimate = sweep_estimate(setup.source_key, setup.corpus_key, tokens, embedding, setup.model, setup.test_ids)
        st.caption(f"The sweep scores {2 + len(SWEEP_BITS) * len(SCHEMES)} models (float, real int8, 8 to 2 bits "
                   f"per tensor and per row) on {tokens:,} tokens: {_seconds(estimate)} here, one thread "
                   "(estimated from a short probe; widths measured before are reused).")
        request = (setup.source_key, setup.corpus_key, tokens, embedding)
        if remembered_button("Run the sweep", "bits_go", request):
            table = run_sweep(*request, setup.model, setup.test_ids)
            show(lesson_charts.bits_loss_chart(table))
            wide = table[table["scheme"].isin(SCHEMES)].pivot(index="bits", columns="scheme",
                                                               values=["loss", "perplexity"])
            wide.columns = [f"{what} ({scheme})" for what, scheme in wide.columns]
            order = [f"{what} ({scheme})" for what in ("loss", "perplexity") for scheme in SCHEMES]
            st.dataframe(wide.sort_index(ascending=False)[order], column_config={
                column: st.column_config.NumberColumn(format="%.3f" if column.startswith("loss") else "%.1f")
                for column in wide.columns})

    st.subheader(f"The same seed, float against {bits} bits {scheme}")
    if setup.dictionary is None:
        st.info(setup.missing)
    elif remembered_button("Write with both", "bits_text_go", setup.source_key):
        (float_words, bit_words), agreed = paired_texts(setup.source_key, bits, scheme, embedding, setup.seed,
                                                        setup.model, setup.dictionary)
        first = agreed.first_difference
        left, right = st.columns(2)
        left.markdown("**float**")
        right.markdown(f"**{bits}-bit weights, {scheme}**")
        left.markdown(charts.paired_html(float_words, first, bit_words), unsafe_allow_html=True)
        right.markdown(charts.paired_html(bit_words, first, float_words), unsafe_allow_html=True)
        st.caption(f"**Takeaway:** {charts.same_pick_takeaway(agreed, TEXT_TEMPERATURE)} Seed {setup.seed} (sidebar), "
                   f"temperature {TEXT_TEMPERATURE:g}; move the bits slider to watch the text fall apart.")

    st.subheader(f"A weight on the {bits}-bit grid")
    names = weight_names(setup.model)
    name = st.selectbox("Weight", names, index=names.index("rnn.weight_hh_l0") if "rnn.weight_hh_l0" in names else 0,
                        key="bits_weight")
    show(lesson_charts.bits_histogram_chart(weight_grid(setup.source_key, name, bits, scheme, setup.model)))
