"""The Fidelity tab: how closely the quantized model follows the float one, in next words, outputs, weights and
per-word surprise, and which variant to pick."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.errors import WlmError
from wlm.fidelity import quantized_weights
from wlm.threads import in_words

from . import glossary
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

# The terms this tab shows, for its "What the words mean" expander.
TERMS = ["top-1 agreement", "KL divergence (nats)", "median", "p99", "nats", "Δ loss", "loss", "perplexity",
         "SQNR (dB)", "predictions", "<unk>", "<eos>", "@-@"]
METRICS = {  # the output agreement's metrics: label, and the terms its help explains
    "top1": ("Same likeliest next word", ["top-1 agreement"]),
    "median": ("Median KL", ["KL divergence (nats)", "median"]),
    "p99": ("99th-percentile KL", ["KL divergence (nats)", "p99"]),
    "delta": ("Loss change", ["Δ loss"]),
}


def agreement_metrics(result) -> None:
    """The statistics the KL chart's takeaway quotes, each with the help text of its terms."""
    values = {"top1": f"{result.top1_agreement:.1%}", "median": f"{result.kl_median:.2g} nats",
              "p99": f"{result.kl_p99:.2g} nats", "delta": f"{result.delta_loss:+.4f} nats"}
    for column, (key, (label, terms)) in zip(st.columns(len(METRICS)), METRICS.items()):
        column.metric(label, values[key], help=" ".join(glossary.help_text(t) for t in terms))


def render(setup: Setup) -> None:
    if setup.spec.is_float:
        st.info("Nothing is quantized: switch on LSTM, Linear or Embedding in the sidebar to compare.")
        return
    glossary.expander(TERMS)
    if setup.dictionary is not None:
        st.subheader("Next word")
        c1, c2 = st.columns([3, 1])
        prompt = c1.text_input("Prompt", setup.dictionary.first_known("the history of the"), key="fid_prompt",
                               persist_state="page")
        prompt = bounded_text(setup, prompt, hosting.MAX_PROMPT_WORDS, hosting.MAX_PROMPT_CHARS, c1)
        k = c2.slider("Top k", 3, 20, 8, key="fid_k", persist_state="page")
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
        st.caption(f"{int(tokens):,} tokens ({int(tokens) - 1:,} predictions): both models read each token and "
                   "predict the next.")
        if setup.hosted:
            st.caption(bound_note(hosting.MAX_TOKENS))
        against = st.radio("Float model against", [f"PyTorch {setup.spec.label}", "ONNX Runtime int8"],
                           horizontal=True, key="fid_engine", persist_state="page")
        engine = "onnxruntime" if against.startswith("ONNX") else "torch"
        compared = "onnxruntime int8" if engine == "onnxruntime" else setup.spec.label
        request = (setup.variant, setup.split, int(tokens), engine)
        if remembered_button("Compare outputs", "kl_go", request):
            try:
                result = fidelity_result(*request, _page=SessionPage())
            except WlmError as exc:
                error(exc, setup)
            else:
                agreement_metrics(result)
                show(charts.kl_chart(result, compared))

    st.subheader("Weights")
    if remembered_button("Measure weight error", "sqnr_go", (setup.variant,)):
        show(charts.sqnr_chart(sqnr_table(setup.variant)))
        names = list(quantized_weights(setup.quantized))
        if names:
            name = st.selectbox("Weight for the histogram", names, key="hist_name", persist_state="page")
            show(charts.histogram_chart(histogram(setup.variant, name)))

    st.subheader("How surprised is each model?")
    if setup.dictionary is not None:
        text = st.text_area("Paste any text", "the cat sat on the mat and the dog ran", key="sur_text",
                            persist_state="page")
        text = bounded_text(setup, text, hosting.MAX_TEXT_WORDS, hosting.MAX_TEXT_CHARS)
        try:
            table = surprisal(setup.variant, setup.vocabulary, text)
        except WlmError as exc:
            error(exc, setup)
        else:
            # A short text word by word, each word's two surprises stacked together; a long one summed up in
            # a bounded page (thousands of shaded words take the browser seconds and can't be compared).
            if len(table) <= word_html.SHOWN_WORDS:
                st.markdown(word_html.surprisal_html(table), unsafe_allow_html=True)
                st.caption(word_html.SURPRISAL_KEY)
            else:
                st.caption(f"{len(table):,} words are too many to shade one by one (up to "
                           f"{word_html.SHOWN_WORDS:,} are): here is each model's surprise along the text, and the "
                           "words whose surprise quantizing changed most.")
                show(word_html.surprise_along_chart(table))
                most = word_html.most_changed_table(table)
                st.markdown(f"**The {len(most):,} words whose surprise quantizing changed most**")
                st.dataframe(most, hide_index=True, width="stretch",
                             column_config={name: st.column_config.NumberColumn(format=fmt) for name, fmt in
                                            (("float (nats)", "%.3f"), ("quantized (nats)", "%.3f"),
                                             ("change", "%+.3f"))})
            shaded = len(table) <= word_html.SHOWN_WORDS
            st.caption(f"**Takeaway:** {word_html.surprisal_takeaway(table, shaded)}"
                       + (" Darker = more surprised (per-word loss)." if shaded else ""))

    st.subheader("Which variant to pick")
    if need_corpus(setup):
        tokens = st.session_state.get("speed_tokens") or min(1000, len(setup.test_ids))
        tokens = hosting.bounded_tokens(tokens, setup.hosted)
        st.caption(f"Every preset on {tokens:,} test tokens ({tokens - 1:,} predictions; the Speed & accuracy "
                   f"slider), {in_words(setup.threads)}.")
        request = (setup.source, setup.split, int(tokens), setup.threads)
        if remembered_button("Measure all presets", "trade_go", request):
            show(charts.tradeoff_chart(ask(tradeoff_table, *request)))
