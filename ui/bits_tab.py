"""The "Fewer bits" tab: weights rounded to 8 ... 2 bits (simulated), the loss against bits, the text
falling apart, and the weight histogram on the N-bit grid. Every number comes from ``wlm.low_bits``."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.low_bits import DEFAULT_BITS_TOKENS, SCHEMES, SWEEP_BITS, weight_names

from .backend import paired_texts, run_sweep, sweep_estimate, weight_grid
from .charts import bits as charts
from .charts import word_html
from .charts.generate import same_pick_takeaway
from .requests import Setup
from .widgets import SessionPage, need_corpus, remembered_button, show, token_slider

# The longest sweep offered off a shared server (a shared one offers hosting.MAX_BITS_TOKENS): a longer sweep teaches
# nothing more, and a slider over all 245k tokens is unusable.
LONGEST_SWEEP_TOKENS = 5 * DEFAULT_BITS_TOKENS
TEXT_WORDS, TEXT_TEMPERATURE = 80, 1.0
POINTS = 2 + len(SWEEP_BITS) * len(SCHEMES)  # float, real int8, then every width of both schemes
SIMULATED_NOTE = (
    "**Simulated.** PyTorch has no int4, int3 or int2 kernel for a dynamically quantized LSTM, so here each weight "
    "of the LSTM and the decoder (and the embedding, if you switch it on) is rounded to the nearest of 2^N levels "
    "and the model then runs in float. Activations are not rounded. At 8 bits the rounded weights are exactly the "
    "real int8 variant's, which the loss chart shows as a check.")


def _seconds(estimate: float) -> str:
    return "under a second" if estimate < 1 else f"about {estimate:.0f} s"


# --- the page ------------------------------------------------------------------------------------

def render(setup: Setup) -> None:
    st.info(SIMULATED_NOTE)
    c1, c2, c3 = st.columns([3, 2, 2])
    bits = c1.select_slider("Weight bits", list(SWEEP_BITS), value=4, key="bits_width", persist_state="page",
                            help="For the text and the histogram; the sweep measures every width from 8 to 2.")
    scheme = c2.radio("Scale", list(SCHEMES), key="bits_scheme", persist_state="page", horizontal=True,
                      format_func=lambda s: {"per-tensor": "one per tensor", "per-row": "one per row"}[s])
    embedding = c3.toggle("Round the embedding too", False, key="bits_emb", persist_state="page")

    st.subheader("Loss against bits")
    if need_corpus(setup):
        hosted = setup.hosted  # a shared server (wlm.hosting): one request kept near 30 s
        total = hosting.token_bound(min(len(setup.test_ids), LONGEST_SWEEP_TOKENS), hosted, hosting.MAX_BITS_TOKENS)
        tokens = token_slider("Test tokens", total, DEFAULT_BITS_TOKENS, "bits_tokens",
                              help="Every width of both schemes, the float model and the real int8 variant are "
                                   "scored on the same first tokens of the test split.")
        if hosted:
            st.caption(f"This shared server sweeps at most {hosting.MAX_BITS_TOKENS:,} tokens, so that one request "
                       "stays near 30 s.")
        estimate = sweep_estimate(setup.source, setup.split, tokens, embedding, _page=SessionPage())
        st.caption(f"The sweep scores {POINTS} models (float, real int8, 8 to 2 bits "
                   f"per tensor and per row) on {tokens:,} tokens: {_seconds(estimate)} here, one thread "
                   "(estimated from a short probe; widths measured before are reused).")
        request = (setup.source, setup.split, tokens, embedding)
        if remembered_button("Run the sweep", "bits_go", request):
            table = run_sweep(*request, POINTS, _page=SessionPage())
            show(charts.bits_loss_chart(table))
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
    elif remembered_button("Write with both", "bits_text_go", (setup.source,)):
        (float_words, bit_words), agreed = paired_texts(setup.source, setup.vocabulary, bits, scheme, embedding,
                                                        setup.seed, TEXT_WORDS, TEXT_TEMPERATURE, _page=SessionPage())
        first = agreed.first_difference
        left, right = st.columns(2)
        left.markdown("**float**")
        right.markdown(f"**{bits}-bit weights, {scheme}**")
        left.markdown(word_html.paired_html(float_words, first, bit_words), unsafe_allow_html=True)
        right.markdown(word_html.paired_html(bit_words, first, float_words), unsafe_allow_html=True)
        st.caption(f"**Takeaway:** {same_pick_takeaway(agreed, TEXT_TEMPERATURE)} Seed {setup.seed} (sidebar), "
                   f"temperature {TEXT_TEMPERATURE:g}; move the bits slider to watch the text fall apart.")

    st.subheader(f"A weight on the {bits}-bit grid")
    names = weight_names(setup.model)
    name = st.selectbox("Weight", names, index=names.index("rnn.weight_hh_l0") if "rnn.weight_hh_l0" in names else 0,
                        key="bits_weight", persist_state="page")
    show(charts.bits_histogram_chart(weight_grid(setup.source, name, bits, scheme)))
