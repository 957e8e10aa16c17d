"""The Fidelity tab: how closely the quantized model follows the float one, in next words, outputs, weights and
per-word surprise, and which variant to pick."""
from __future__ import annotations

import streamlit as st

from wlm import charts, hosting
from wlm.corpus import Dictionary
from wlm.errors import WlmError
from wlm.fidelity import quantized_weights

from .cached import (
    fidelity_result,
    histogram,
    next_words,
    onnx_int8,
    sqnr_table,
    surprisal,
    tradeoff_table,
    waited_caption,
)
from .setup import Setup
from .speed_tab import BOUND_NOTE, token_limit
from .widgets import bounded_text, error, need_corpus, remembered_button, show, token_slider


def _default_prompt(dictionary: Dictionary) -> str:
    wanted = "the history of the"
    return wanted if all(w in dictionary.word2idx for w in wanted.split()) else dictionary.idx2word[0]


def render(setup: Setup) -> None:
    if setup.spec.is_float:
        st.info("Nothing is quantized: switch on LSTM, Linear or Embedding in the sidebar to compare.")
        return
    args = (setup.model, setup.quant)
    if setup.dictionary is not None:
        st.subheader("Next word")
        c1, c2 = st.columns([3, 1])
        prompt = c1.text_input("Prompt", _default_prompt(setup.dictionary), key="fid_prompt")
        prompt = bounded_text(setup, prompt, hosting.MAX_PROMPT_WORDS, hosting.MAX_PROMPT_CHARS, c1)
        k = c2.slider("Top k", 3, 20, 8, key="fid_k")
        try:
            show(charts.next_word_chart(next_words(setup.source_key, setup.spec, prompt, k, *args, setup.dictionary)))
        except WlmError as exc:
            error(exc, setup)
    else:
        st.info(setup.missing)

    st.subheader("Output agreement")
    if need_corpus(setup):
        tokens = token_slider("Test tokens", token_limit(setup), 2000, "fid_tokens")
        if setup.hosted:
            st.caption(BOUND_NOTE.format(hosting.MAX_TOKENS))
        against = st.radio("Float model against", [f"PyTorch {setup.spec.label}", "ONNX Runtime int8"],
                           horizontal=True, key="fid_engine")
        ort = against.startswith("ONNX")
        request = (setup.source_key, setup.corpus_key, "onnxruntime int8" if ort else setup.spec, int(tokens))
        if remembered_button("Compare outputs", "kl_go", request):
            try:
                other = onnx_int8(setup.source_key, setup.model) if ort else setup.quant
                result = fidelity_result(*request, setup.model, other, setup.test_ids)
            except WlmError as exc:
                error(exc, setup)
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
        text = bounded_text(setup, text, hosting.MAX_TEXT_WORDS, hosting.MAX_TEXT_CHARS)
        try:
            table = surprisal(setup.source_key, setup.spec, text, *args, setup.dictionary)
            st.markdown(charts.surprisal_html(table), unsafe_allow_html=True)
            st.caption(f"**Takeaway:** {charts.surprisal_takeaway(table)} Darker = more surprised (per-word loss).")
        except WlmError as exc:
            error(exc, setup)

    st.subheader("Which variant to pick")
    if need_corpus(setup):
        tokens = st.session_state.get("speed_tokens") or min(1000, len(setup.test_ids))
        if setup.hosted:
            tokens = hosting.clamp_tokens(tokens, hosting.MAX_TOKENS).tokens
        st.caption(f"Every preset on {tokens:,} test tokens (the Speed & accuracy slider), {setup.threads} thread(s).")
        request = (setup.source_key, setup.corpus_key, int(tokens), setup.threads)
        if remembered_button("Measure all presets", "trade_go", request):
            show(charts.tradeoff_chart(tradeoff_table(*request, setup.model, setup.test_ids)))
            waited_caption("tradeoff_table", *request)
