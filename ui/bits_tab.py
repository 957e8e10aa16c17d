"""The "Fewer bits" tab: weights rounded to 8 ... 2 bits (simulated) under a scale per tensor, row or group (with or
without a zero point), the loss against bits and against the bits a weight really takes stored, the text falling
apart, and the weight histogram on the N-bit grid. Every number comes from ``wlm.low_bits``."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.low_bits import (
    DEFAULT_BITS_TOKENS,
    DEFAULT_GROUP_SIZE,
    GROUP_SIZES,
    SCHEMES,
    SWEEP_BITS,
    SWEEP_SCHEMES,
    scheme_label,
    weight_names,
)

from . import glossary
from .backend import paired_texts, run_sweep, sweep_estimate, weight_grid
from .charts import bits as charts
from .charts import word_html
from .charts.generate import same_pick_takeaway
from .requests import Setup
from .widgets import SessionPage, listed, need_corpus, remembered_button, show, split_slider

# The longest sweep offered off a shared server (a shared one offers hosting.MAX_BITS_TOKENS): a longer sweep teaches
# nothing more, and a slider over all 245k tokens is unusable.
LONGEST_SWEEP_TOKENS = 5 * DEFAULT_BITS_TOKENS
TEXT_WORDS, TEXT_TEMPERATURE = 80, 1.0
GRANULARITIES = {"per-tensor": "one per tensor", "per-row": "one per row", "per-group": "one per group of G"}
TERMS = ["per-group", "asymmetric (zero point)", "bits per weight", "loss", "Δ loss", "perplexity", "nats"]
SIMULATED_NOTE = (
    "**Simulated.** PyTorch has no int4, int3 or int2 kernel for a dynamically quantized LSTM, so here each weight "
    "of the LSTM and the decoder (and the embedding, if you switch it on) is rounded to the nearest of 2^N levels "
    "and the model then runs in float. Activations are not rounded. At 8 bits per tensor the rounded weights are "
    "exactly the real int8 variant's, which the loss chart shows as a check.")


def scheme_of(granularity: str, zero_point: bool) -> str:
    """The ``low_bits.SCHEMES`` name of a scale granularity, with a zero point where the scheme has one (a tensor's
    single scale is always symmetric, as torch's int8 weights are)."""
    return f"{granularity}-asym" if zero_point and granularity != "per-tensor" else granularity


def points(schemes) -> int:
    """The models a sweep scores: float, the real int8 variant, then every width of every scheme."""
    return 2 + len(SWEEP_BITS) * len(schemes)


def _seconds(estimate: float) -> str:
    return "under a second" if estimate < 1 else f"about {estimate:.0f} s"


# --- the page ------------------------------------------------------------------------------------

def render(setup: Setup) -> None:
    st.info(SIMULATED_NOTE)
    # The sweep's schemes are chosen further down; read here so the group size shows whenever any choice uses it.
    swept = [s for s in SCHEMES if s in st.session_state.get("bits_sweep_schemes", SWEEP_SCHEMES)]
    c1, c2, c3 = st.columns([3, 4, 3])
    bits = c1.select_slider("Weight bits", list(SWEEP_BITS), value=4, key="bits_width", persist_state="page",
                            help="For the text and the histogram; the sweep measures every width from 8 to 2.")
    granularity = c2.radio("Scale", list(GRANULARITIES), key="bits_scheme", persist_state="page", horizontal=True,
                           format_func=GRANULARITIES.get,
                           help="How many weights share one scale: the whole tensor, each row (one output), or "
                                "each run of G consecutive weights of a row.")
    zero_point = c2.toggle("zero point (asymmetric)", False, key="bits_asym", persist_state="page",
                           disabled=granularity == "per-tensor", help=glossary.help_text("asymmetric (zero point)"))
    group_size = DEFAULT_GROUP_SIZE
    if granularity == "per-group" or any("per-group" in s for s in swept):
        group_size = int(c3.selectbox("Group size G", GROUP_SIZES, index=GROUP_SIZES.index(DEFAULT_GROUP_SIZE),
                                      key="bits_group", persist_state="page",
                                      help=f"{glossary.help_text('per-group')} Used by the text, the histogram "
                                           "and the sweep."))
    embedding = c3.toggle("Round the embedding too", False, key="bits_emb", persist_state="page")
    scheme = scheme_of(granularity, zero_point)
    group = group_size if "per-group" in scheme else DEFAULT_GROUP_SIZE  # other schemes ignore it: one cache entry
    label = scheme_label(scheme, group_size)

    st.subheader("Loss against bits")
    if need_corpus(setup):
        _sweep(setup, embedding, group_size)

    st.subheader(f"The same seed, float against {bits} bits {label}")
    if setup.dictionary is None:
        st.info(setup.missing)
    elif remembered_button("Write with both", "bits_text_go", (setup.source,)):
        (float_words, bit_words), agreed = paired_texts(setup.source, setup.vocabulary, bits, scheme, embedding,
                                                        setup.seed, TEXT_WORDS, TEXT_TEMPERATURE, group,
                                                        _page=SessionPage())
        first = agreed.first_difference
        left, right = st.columns(2)
        left.markdown("**float**")
        right.markdown(f"**{bits}-bit weights, {label}**")
        left.markdown(word_html.paired_html(float_words, first, bit_words), unsafe_allow_html=True)
        right.markdown(word_html.paired_html(bit_words, first, float_words), unsafe_allow_html=True)
        st.caption(f"**Takeaway:** {same_pick_takeaway(agreed, TEXT_TEMPERATURE)} Seed {setup.seed} (sidebar), "
                   f"temperature {TEXT_TEMPERATURE:g}; move the bits slider to watch the text fall apart.")

    st.subheader(f"A weight on the {bits}-bit grid")
    names = weight_names(setup.model)
    name = st.selectbox("Weight", names, index=names.index("rnn.weight_hh_l0") if "rnn.weight_hh_l0" in names else 0,
                        key="bits_weight", persist_state="page")
    show(charts.bits_histogram_chart(weight_grid(setup.source, name, bits, scheme, group), group_size=group))
    glossary.expander(TERMS)


def _sweep(setup: Setup, embedding: bool, group_size: int) -> None:
    left, right = st.columns([3, 2])
    chosen = left.multiselect("Schemes to sweep", list(SCHEMES), default=list(SWEEP_SCHEMES),
                              key="bits_sweep_schemes", persist_state="page",
                              format_func=lambda s: scheme_label(s, group_size),
                              help="Every width from 8 to 2 bits of each scheme chosen is scored. The -asym schemes "
                                   "keep a zero point per row or group.")
    schemes = tuple(s for s in SCHEMES if s in chosen)  # one order, so a choice's request and cache never depend on it
    with right:
        tokens = split_slider(setup, "Test tokens", DEFAULT_BITS_TOKENS, "bits_tokens", longest=LONGEST_SWEEP_TOKENS,
                              limit=hosting.MAX_BITS_TOKENS,
                              shared=f"This shared server sweeps at most {hosting.MAX_BITS_TOKENS:,} tokens, so that "
                                     "one request stays near 30 s.",
                              help="Every width of every scheme, the float model and the real int8 variant are "
                                   "scored on the same first tokens of the test split.")
    if not schemes:
        st.info("Choose at least one scheme to sweep.")
        return
    grouped = group_size if any("per-group" in s for s in schemes) else DEFAULT_GROUP_SIZE
    estimate = sweep_estimate(setup.source, setup.split, tokens, embedding, schemes, grouped, _page=SessionPage())
    st.caption(f"The sweep scores {points(schemes)} models (float, real int8, 8 to 2 bits "
               f"{listed([scheme_label(s, grouped) for s in schemes])}) on {tokens:,} tokens: {_seconds(estimate)} "
               "here, one thread (estimated from a short probe; widths measured before are reused).")
    request = (setup.source, setup.split, tokens, embedding, schemes, grouped)
    if remembered_button("Run the sweep", "bits_go", request):
        table = run_sweep(*request, _page=SessionPage())
        show(charts.bits_loss_chart(table))
        st.subheader("Δ loss against the bits a weight takes stored")
        show(charts.bits_size_chart(table))
        _table(table)


def _table(table) -> None:
    """The sweep's numbers, a row per width and a column per scheme and figure."""
    rows = charts.simulated(table)
    labels = list(dict.fromkeys(rows["label"]))
    wide = rows.pivot(index="bits", columns="label", values=["loss", "perplexity", "bits_per_weight"])
    # Loss and bits per weight first: the size chart's two axes, in view before the table scrolls sideways.
    names = {"loss": "loss", "bits_per_weight": "bits per weight", "perplexity": "perplexity"}
    formats = {"loss": "%.3f", "perplexity": "%.1f", "bits_per_weight": "%.3f"}
    wide.columns = [f"{names[what]} ({label})" for what, label in wide.columns]
    order = [f"{names[what]} ({label})" for what in names for label in labels]
    st.dataframe(wide.sort_index(ascending=False)[order], column_config={
        f"{names[what]} ({label})": st.column_config.NumberColumn(
            format=formats[what], help=glossary.help_text(names[what]))
        for what in names for label in labels})
