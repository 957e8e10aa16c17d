"""The Generate tab: float and quantized models write from the same seed side by side, where they part, and how
likely a shared pick was at each step until then."""
from __future__ import annotations

import time

import streamlit as st

from wlm import hosting
from wlm.corpus import EOS
from wlm.errors import WlmError
from wlm.generate import MAX_WORDS, first_difference, generate_side_by_side

from .backend import shared_picks
from .charts import generate as charts
from .charts import word_html
from .requests import Setup
from .widgets import bounded_text, error

MAX_APP_WORDS = min(1000, MAX_WORDS)


def _markdown_word(word: str) -> str:
    if word == EOS:
        return "  \n"
    escaped = "".join("\\" + c if c in "\\`*_[]<>#|~$" else c for c in word)
    return escaped + " "


def render(setup: Setup) -> None:
    if setup.dictionary is None:
        st.info(setup.missing)
        return
    c1, c2, c3 = st.columns([2, 1, 3])
    temperature = c1.slider("Temperature (0 = greedy)", 0.0, 2.0, 1.0, 0.05, key="gen_temperature")
    words = c2.number_input("Words", 1, MAX_APP_WORDS, 100, key="gen_words")
    words = min(max(int(words), 1), MAX_APP_WORDS)  # the range bounds the box, not what a script may send
    prompt = c3.text_input("Prompt (optional)", key="gen_prompt")
    prompt = bounded_text(setup, prompt, hosting.MAX_PROMPT_WORDS, hosting.MAX_PROMPT_CHARS, c3)
    st.caption(f"Seed {setup.seed} (sidebar). {charts.TICKETS_EXPLAINED}")
    _, unknown = setup.dictionary.encode_prompt(prompt, strict=False)  # only named here, never refused
    if unknown:
        st.warning(f"Not in the vocabulary (read as <unk>): {', '.join(unknown[:10])}")
    request = (setup.variant.key, int(words), float(temperature), setup.seed, prompt)
    pressed = st.button("Generate", key="gen_go", type="primary")
    left, right = st.columns(2)
    left.markdown("**float**")
    right.markdown(f"**quantized ({setup.spec.label})**")
    float_box, quant_box = left.empty(), right.empty()
    if pressed:
        # Both models write at once (a thread each) and the page shows their words as they come;
        # the finished pair is then shown with where it parts and how likely a shared pick was.
        kwargs = dict(words=int(words), temperature=float(temperature), seed=setup.seed, prompt=prompt)
        boxes = {"float": float_box, "quantized": quant_box}
        texts: dict[str, list[str]] = {name: [] for name in boxes}
        seconds: dict[str, float] = {}
        try:
            shown = time.perf_counter()
            for step in generate_side_by_side({"float": setup.model, "quantized": setup.quantized}, setup.dictionary,
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
            error(exc, setup)
            return
        st.session_state["gen_result"] = {**texts, "seconds": seconds, "request": request,
                                          "first_difference": first_difference(*texts.values())}
    result = st.session_state.get("gen_result")
    if not result or result["request"] != request:
        return
    first = result["first_difference"]
    float_box.markdown(word_html.paired_html(result["float"], first, result["quantized"]), unsafe_allow_html=True)
    quant_box.markdown(word_html.paired_html(result["quantized"], first, result["float"]), unsafe_allow_html=True)
    # Replaying both models along the shared text takes seconds for a long one that never parts (float16).
    with st.spinner("Replaying both models to measure how likely a shared pick was at each step…"):
        agreed = shared_picks(setup.variant, setup.vocabulary, setup.seed, float(temperature), prompt, int(words),
                              result["float"], result["quantized"])
    figure = charts.same_pick_chart(agreed, float(temperature))
    st.altair_chart(figure.chart, width="stretch")
    st.caption(f"**Takeaway:** {figure.takeaway} "
               f"{charts.generation_speed_note(len(result['float']), result['seconds'], setup.spec.label)}")
