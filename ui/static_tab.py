"""The "Static or dynamic" tab: activation scales fixed ahead of time from calibration text against the ones dynamic
quantization picks from every input, side by side on the test tokens, with each input's run-time scales against
the fixed ones, the loss against the calibration size, and what to notice. Every number comes from
``wlm.static_quant``."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.static_quant import (
    CALIBRATION_SIZES,
    DEFAULT_CALIBRATION_TOKENS,
    DEFAULT_STATIC_TOKENS,
    notice,
    point_label,
    readable_rows,
    share_text,
    text_takeaway,
    variants_takeaway,
)

from .backend import static_estimate, static_study
from .charts import static as charts
from .requests import Setup
from .widgets import SessionPage, ask, need_corpus, remembered_button, show, token_slider

# The most test tokens offered off a shared server (a shared one offers hosting.MAX_STATIC_TOKENS): every simulated
# variant runs step by step in Python, about a minute for the default 2,000 here.
LONGEST_STATIC_TOKENS = 5_000
CALIBRATION_CHOICES = (100, 500, 1_000, 2_000, 5_000, 10_000, 20_000)

NOTE = (
    "**Dynamic** quantization (the tutorial's) picks each activation's scale and zero point from that activation, "
    "every time a quantized matmul runs. **Static** quantization fixes them ahead of time: torch's observers "
    "(min-max and histogram, with the same 0-127 codes) watch the activations at the same points while the float "
    "model reads training text. The points are the inputs of every quantized matmul: each LSTM layer's input "
    "product (x → W_ih, one scale per 25-word chunk), its recurrent product (h → W_hh, one per step) and the "
    "decoder's input.\n\n"
    "**Real or simulated.** PyTorch has no statically quantized LSTM, so the static rows are *simulated*: the LSTM "
    "runs step by step with the int8 weights and each activation is rounded with the fixed scale "
    "(fake-quantized). The *dynamic (simulated)* row is the same loop with run-time scales: it equals the real "
    "dynamic model, which shows the simulation rounds exactly where torch does. The float, dynamic and "
    "*decoder only* rows run on torch's real kernels (the decoder statically quantized by torch's eager mode, the "
    "LSTM dynamic), so only their speed is measured.")

POINT_FORMATS = {"inputs seen": "%d"}


def _calibration_choices(setup: Setup) -> list[int]:
    limit = hosting.token_bound(len(setup.split.corpus.train), setup.hosted, hosting.MAX_STATIC_CALIBRATION_TOKENS)
    return [n for n in CALIBRATION_CHOICES if n <= limit] or [limit]


def _seconds(estimate: float) -> str:
    return "under a second" if estimate < 1 else f"about {estimate:.0f} s"


def _points_table(found):
    """Per input point, for people: where dynamic's inputs ranged on the test tokens, and each fixed range."""
    table = found.points
    shown = {"input": table["input"], "inputs seen": table["calls"],
             "run-time low": table["runtime_low"], "run-time high": table["runtime_high"],
             "run-time scale (median)": table["runtime_scale_median"]}
    for o in found.observers:
        slug = o.replace("-", "_")
        shown[f"{o} low"] = table[f"{slug}_low"]
        shown[f"{o} high"] = table[f"{slug}_high"]
        shown[f"{o} scale"] = table[f"{slug}_scale"]
        shown[f"{o}: clipped"] = table[f"{slug}_clipped_share"].map(share_text)
    return shown


def render(setup: Setup) -> None:
    st.info(NOTE)
    if not need_corpus(setup):
        return
    hosted = setup.hosted
    total = hosting.token_bound(min(len(setup.test_ids), LONGEST_STATIC_TOKENS), hosted, hosting.MAX_STATIC_TOKENS)
    left, right = st.columns(2)
    with left:
        tokens = token_slider("Test tokens", total, DEFAULT_STATIC_TOKENS, "static_tokens",
                              help="Every row is scored on the same first tokens of the test split.")
    choices = _calibration_choices(setup)
    if len(choices) > 1:
        calibration = right.select_slider(
            "Calibration tokens (training split)", choices, key="static_calibration", persist_state="page",
            value=max([n for n in choices if n <= DEFAULT_CALIBRATION_TOKENS] or choices[:1]),
            help="The static rows' scales are fixed from this many training tokens; the loss-against-size chart "
                 f"also calibrates on {', '.join(f'{n:,}' for n in CALIBRATION_SIZES)} (as many as the split allows).")
    else:  # a training split too short to choose from
        calibration = choices[0]
        right.caption(f"Calibration on the whole training split ({calibration:,} tokens).")
    calibration = min(max(int(calibration), 2), choices[-1])  # a link or a script may send any value
    sizes = tuple(sorted({min(n, choices[-1]) for n in CALIBRATION_SIZES}))
    if hosted:
        st.caption(f"This shared server scores at most {hosting.MAX_STATIC_TOKENS:,} test tokens and calibrates on at "
                   f"most {hosting.MAX_STATIC_CALIBRATION_TOKENS:,}, so that one request stays near 30 s.")
    estimate = static_estimate(setup.source, setup.split, tokens, calibration, sizes, hosted, _page=SessionPage())
    st.caption(f"Calibration on up to {sizes[-1]:,} training tokens, then the float model, the real dynamic variant, "
               f"the real static decoders and every simulated variant on {tokens:,} test tokens: "
               f"{_seconds(sum(estimate.values()))} here, one thread (estimated from a short probe).")
    request = (setup.source, setup.split, tokens, calibration, sizes, hosted)
    if not remembered_button("Measure static against dynamic", "static_go", request):
        return
    found = ask(static_study, *request)
    for note in found.notes:
        st.caption(note)

    st.subheader("Side by side")
    st.dataframe(readable_rows(found.table("variants")).drop(columns=["predictions", "seconds"]), hide_index=True)
    st.caption(f"**Takeaway:** {variants_takeaway(found)} Rows marked *real* ran on torch's kernels; *simulated* rows "
               "are fake-quantized (no speed: the loop runs in Python). Clipped: the share of the activations "
               "arriving at the quantized matmuls that fell outside the fixed range. Every row scores the same "
               f"{found.tokens - 1:,} next-word predictions.")

    st.subheader("Run-time scales against the fixed one")
    points = list(found.points["point"])
    point = st.selectbox("Input of", points, index=points.index("rnn.weight_hh_l0") if "rnn.weight_hh_l0" in points
                         else 0, format_func=point_label, key="static_point", persist_state="page")
    show(charts.scales_chart(found, point))
    ranges = _points_table(found)
    st.dataframe(ranges, hide_index=True, column_config={
        name: st.column_config.NumberColumn(format=POINT_FORMATS.get(name, "%.4g"))
        for name in ranges if name != "input" and not name.endswith("clipped")})

    st.subheader("Loss against calibration size")
    show(charts.sizes_chart(found))
    st.markdown("**Calibrated on the training text, or on the test tokens themselves**")
    st.dataframe(readable_rows(found.table("calibration text")).drop(columns=["kernels", "predictions", "seconds",
                                                                             "tokens/s"]), hide_index=True)
    st.caption(f"**Takeaway:** {text_takeaway(found)}")

    st.subheader("What to notice")
    st.markdown("\n".join(f"- {line}" for line in notice(found)))
