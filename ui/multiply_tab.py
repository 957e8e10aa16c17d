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

# How the tables show their numbers (Streamlit's own formatting; the data keep every digit). Enough digits that
# "corrected × output_scale + bias" worked out from the shown numbers gives the shown "quantized" to its last
# digit: a float32 scale to 6 significant figures, the bias to 5 decimals (see tests/test_multiply_tab.py).
SCALE_FORMAT = "%.5e"
WEIGHT_FORMATS = {"row": "%d", "scale": SCALE_FORMAT}  # and "%d" for every int8 weight
OUTPUT_FORMATS = {"index": "%d", "accumulator": "%d", "zero_point_term": "%d", "corrected": "%d",
                  "output_scale": SCALE_FORMAT, "bias": "%.5f", "quantized": "%.4f", "float": "%.4f", "error": "%.4f"}
OUTPUT_HELP = {"zero_point_term": "The activation's zero point × the row's sum of int8 weights.",
               "corrected": "accumulator − zero_point_term",
               "output_scale": "Activation scale × the row's weight scale.",
               "quantized": "corrected × output_scale + bias", "error": "quantized − float"}


def _formatted(table, formats: dict, default: str | None = None, tips: dict | None = None) -> dict:
    """``column_config`` showing each column of ``table`` in its format (``default`` for the others)."""
    return {name: st.column_config.NumberColumn(format=formats.get(name, default), help=(tips or {}).get(name))
            for name in table.columns}


def scientific(value: float, fmt: str = SCALE_FORMAT) -> str:
    """``value`` as the table's printf format writes it in the browser (sprintf-js: ``5.09312e-4``, not ``e-04``)."""
    mantissa, _, exponent = (fmt % value).partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _controls(setup: Setup):
    layers = layer_names(setup.model)
    c1, c2, c3 = st.columns([3, 2, 2])
    layer = c1.selectbox("Layer", layers, index=layers.index("decoder"), format_func=describe_layer, key="mul_layer",
                         persist_state="page")
    kinds = [PROMPT, POSITION] if setup.test_ids is not None else [PROMPT]
    kind = c2.radio("Input", kinds, key="mul_kind", persist_state="page", horizontal=True)
    per_channel = c3.toggle("Per-channel weights", False, key="mul_pc", persist_state="page",
                            help="One int8 scale per output row instead of one for the whole tensor.")
    c1, c2 = st.columns(2)
    if kind == POSITION:
        last = len(setup.test_ids) - 1
        position = c1.number_input(f"Test position (0–{last:,})", 0, last, min(1000, last), key="mul_pos",
                                   persist_state="page",
                                   help=f"The float model reads the {DEFAULT_CONTEXT} words before it first.")
        source = ("position", int(position))
    else:
        prompt = c1.text_input("Prompt (its last word is the input)",
                               setup.dictionary.first_known("the history of the", "the cat sat on the"),
                               key="mul_prompt", persist_state="page")
        source = ("prompt", prompt)
    second = c2.text_input("A second prompt, to compare run-time scales",
                           setup.dictionary.first_known("she was born in", "a dog ran"), key="mul_prompt2",
                           persist_state="page")
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
    c[0].metric("Activation scale", scientific(result.x_scale), help="A float32, to 6 significant figures.")
    c[1].metric("Zero point", f"{result.x_zero_point}")
    c[2].metric("Range covered", f"{min(result.x_min, 0.0):.3f} … {max(result.x_max, 0.0):.3f}")
    show(charts.scales_chart(scales))

    st.subheader(f"3 · The activation as unsigned integers {result.qmin}–{result.qmax}")
    st.markdown("Why not 0–255? PyTorch's x86 kernels add two uint8 × int8 products into an int16, and two "
                "255 × 128 products would overflow it; with `reduce_range` activations get 7 bits, so they cannot.")
    show(charts.codes_chart(result))

    st.subheader("4 · Int8 weights, with their scales")
    weights = result.weight_rows(rows=4, columns=8)
    st.dataframe(weights, hide_index=True, column_config=_formatted(weights, WEIGHT_FORMATS, "%d"))
    show(charts.weights_chart(result))

    st.subheader("5 · Int32 accumulation and rescale")
    outputs = result.output_table().head(4)
    st.dataframe(outputs, hide_index=True, column_config=_formatted(outputs, OUTPUT_FORMATS, tips=OUTPUT_HELP))
    first = outputs.iloc[0]
    worked = (f"{OUTPUT_FORMATS['corrected'] % first['corrected']} × {scientific(first['output_scale'])} + "
              f"{OUTPUT_FORMATS['bias'] % first['bias']} = {OUTPUT_FORMATS['quantized'] % first['quantized']}")
    st.caption(f"The first outputs: corrected = accumulator − zero_point_term (zero point {result.x_zero_point} × "
               f"the row's int8 sum); quantized = corrected × output_scale + bias, where output_scale = activation "
               f"scale × the row's weight scale. Output 0: {worked}.")
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
