"""The Generate tab: float and quantized models write from the same seed side by side, and where they part."""
from __future__ import annotations

import time

import streamlit as st

from wlm import charts
from wlm.corpus import EOS
from wlm.errors import WlmError
from wlm.generate import MAX_WORDS, first_difference, generate_side_by_side

from .setup import Setup

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
