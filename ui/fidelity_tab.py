"""The Fidelity tab: how closely the quantized model follows the float one, in next words, outputs, weights and
per-word surprise, and which variant to pick."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.errors import WlmError
from wlm.fidelity import quantized_weights

from .backend import fidelity_result, histogram, next_words, sqnr_table, surprisal, tradeoff_table
from .charts import fidelity as charts
from .charts import word_html
from .requests import Setup
from .widgets import (
    SessionPage,
    ask,
    bound_note,
    bounded_text,
    error,
    need_corpus,
    remembered_button,
    show,
    token_slider,
)


def render(setup: Setup) -> None:
    if setup.spec.is_float:
        st.info("Nothing is quantized: switch on LSTM, Linear or Embedding in the sidebar to compare.")
        return
    if setup.dictionary is not None:
        st.subheader("Next word")
        c1, c2 = st.columns([3, 1])
        prompt = c1.text_input("Prompt", setup.dictionary.first_known("the history of the"), key="fid_prompt")
        prompt = bounded_text(setup, prompt, hosting.MAX_PROMPT_WORDS, hosting.MAX_PROMPT_CHARS, c1)
        k = c2.slider("Top k", 3, 20, 8, key="fid_k")
        try:
            show(charts.next_word_chart(next_words(setup.variant, setup.vocabulary, prompt, k)))
        except WlmError as exc:
            error(exc, setup)
    else:
        st.info(setup.missing)

    st.subheader("Output agreement")
    if need_corpus(setup):
        tokens = token_slider("Test tokens", hosting.token_bound(len(setup.test_ids), setup.hosted), 2000,
                              "fid_tokens")
        if setup.hosted:
            st.caption(bound_note(hosting.MAX_TOKENS))
        against = st.radio("Float model against", [f"PyTorch {setup.spec.label}", "ONNX Runtime int8"],
                           horizontal=True, key="fid_engine")
        engine = "onnxruntime" if against.startswith("ONNX") else "torch"
        request = (setup.variant, setup.split, int(tokens), engine)
        if remembered_button("Compare outputs", "kl_go", request):
            try:
                result = fidelity_result(*request, _page=SessionPage())
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
    if remembered_button("Measure weight error", "sqnr_go", (setup.variant,)):
        show(charts.sqnr_chart(sqnr_table(setup.variant)))
        names = list(quantized_weights(setup.quantized))
        if names:
            name = st.selectbox("Weight for the histogram", names, key="hist_name")
            show(charts.histogram_chart(histogram(setup.variant, name)))

    st.subheader("How surprised is each model?")
    if setup.dictionary is not None:
        text = st.text_area("Paste any text", "the cat sat on the mat and the dog ran", key="sur_text")
        text = bounded_text(setup, text, hosting.MAX_TEXT_WORDS, hosting.MAX_TEXT_CHARS)
        try:
            table = surprisal(setup.variant, setup.vocabulary, text)
            st.markdown(word_html.surprisal_html(table), unsafe_allow_html=True)
            st.caption(f"**Takeaway:** {word_html.surprisal_takeaway(table)} Darker = more surprised (per-word loss).")
        except WlmError as exc:
            error(exc, setup)

    st.subheader("Which variant to pick")
    if need_corpus(setup):
        tokens = st.session_state.get("speed_tokens") or min(1000, len(setup.test_ids))
        tokens = hosting.bounded_tokens(tokens, setup.hosted)
        st.caption(f"Every preset on {tokens:,} test tokens (the Speed & accuracy slider), {setup.threads} thread(s).")
        request = (setup.source, setup.split, int(tokens), setup.threads)
        if remembered_button("Measure all presets", "trade_go", request):
            show(charts.tradeoff_chart(ask(tradeoff_table, *request)))
