"""The "Inside a multiply" tab: one dynamically quantized layer, stage by stage, on a real input.

Every number comes from ``wlm.dynamic_multiply``, whose last stage is tested against PyTorch's own
quantized modules, so the page shows what PyTorch computes rather than a sketch of it.
"""
from __future__ import annotations

import streamlit as st

from wlm.dynamic_multiply import DEFAULT_CONTEXT, describe_layer, layer_names
from wlm.errors import WlmError

from .backend import multiply_lesson
from .charts import multiply as charts
from .requests import Setup
from .widgets import error, show

PROMPT, POSITION = "Last word of a prompt", "A test position"


def _controls(setup: Setup):
    layers = layer_names(setup.model)
    c1, c2, c3 = st.columns([3, 2, 2])
    layer = c1.selectbox("Layer", layers, index=layers.index("decoder"), format_func=describe_layer, key="mul_layer")
    kinds = [PROMPT, POSITION] if setup.test_ids is not None else [PROMPT]
    kind = c2.radio("Input", kinds, key="mul_kind", horizontal=True)
    per_channel = c3.toggle("Per-channel weights", False, key="mul_pc",
                            help="One int8 scale per output row instead of one for the whole tensor.")
    c1, c2 = st.columns(2)
    if kind == POSITION:
        last = len(setup.test_ids) - 1
        position = c1.number_input(f"Test position (0–{last:,})", 0, last, min(1000, last), key="mul_pos",
                                   help=f"The float model reads the {DEFAULT_CONTEXT} words before it first.")
        source = ("position", int(position))
    else:
        prompt = c1.text_input("Prompt (its last word is the input)",
                               setup.dictionary.first_known("the history of the", "the cat sat on the"),
                               key="mul_prompt")
        source = ("prompt", prompt)
    second = c2.text_input("A second prompt, to compare run-time scales",
                           setup.dictionary.first_known("she was born in", "a dog ran"), key="mul_prompt2")
    return layer, source, second, per_channel


def render(setup: Setup) -> None:
    if setup.dictionary is None:
        st.info(setup.missing)
        return
    st.markdown("A dynamically quantized layer computes `W x + b` with integers. Pick a layer and an input and follow "
                "the real numbers through it, stage by stage.")
    layer, source, second, per_channel = _controls(setup)
    try:
        result, scales, moved = multiply_lesson(setup.source, setup.vocabulary, setup.split, layer, source, second,
                                                per_channel)
    except WlmError as exc:
        error(exc, setup)
        return
    st.caption(f"Input: the vector arriving at {describe_layer(layer)} — {result.source}, reading "
               f"'{result.word}'. {result.x.size:,} inputs, {result.output.size:,} outputs.")

    st.subheader("1 · The float activation arrives")
    show(charts.activation_chart(result))

    st.subheader("2 · Scale and zero point, computed now")
    c = st.columns(3)
    c[0].metric("Activation scale", f"{result.x_scale:.4g}")
    c[1].metric("Zero point", f"{result.x_zero_point}")
    c[2].metric("Range covered", f"{min(result.x_min, 0.0):.3f} … {max(result.x_max, 0.0):.3f}")
    show(charts.scales_chart(scales))

    st.subheader(f"3 · The activation as unsigned integers {result.qmin}–{result.qmax}")
    st.markdown("Why not 0–255? PyTorch's x86 kernels add two uint8 × int8 products into an int16, and two "
                "255 × 128 products would overflow it; with `reduce_range` activations get 7 bits, so they cannot.")
    show(charts.codes_chart(result))

    st.subheader("4 · Int8 weights, with their scales")
    st.dataframe(result.weight_rows(rows=4, columns=8), hide_index=True)
    show(charts.weights_chart(result))

    st.subheader("5 · Int32 accumulation and rescale")
    st.dataframe(result.output_table().head(4), hide_index=True)
    st.caption("The first outputs: corrected = accumulator − zero point × the row's int8 sum; "
               "quantized = corrected × output_scale + bias.")
    show(charts.accumulation_chart(result))

    st.subheader("6 · The result against the float layer")
    summary = result.summary()
    c = st.columns(3)
    c[0].metric("SQNR", f"{summary['sqnr_db']:.1f} dB")
    c[1].metric("Largest error", f"{summary['output_max_abs_error']:.3g}")
    c[2].metric("Largest |int32 sum|", f"{summary['accumulator_max_abs']:,}")
    show(charts.error_chart(result))
    if moved is not None:
        st.markdown("**The next-word probabilities that moved most**")
        show(charts.moved_scores_chart(moved))
