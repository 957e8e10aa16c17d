"""The Inside a multiply tab's charts: the six stages of one dynamic quantized multiply, and the moved next words."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from wlm.dynamic_multiply import DynamicMultiply, describe_layer
from wlm.low_bits import levels

from .style import ACCENT, FLOAT, HEIGHT, INT32_SUM, MODEL_COLORS, SCALE, ZERO, Figure, readable


def activation_chart(result: DynamicMultiply) -> Figure:
    """1. Histogram of the float activation vector, with its min and max (and 0) as rules."""
    values = pd.DataFrame({"value": result.x.astype(float)})
    bars = alt.Chart(values).mark_bar(color=FLOAT).encode(
        x=alt.X("value:Q", bin=alt.Bin(maxbins=50), title="activation value"),
        y=alt.Y("count():Q", title="elements"))
    marks = pd.DataFrame({"at": [result.x_min, 0.0, result.x_max], "what": ["min", "zero", "max"]})
    rules = alt.Chart(marks).mark_rule(strokeWidth=2, strokeDash=[6, 3]).encode(
        x="at:Q", color=alt.Color("what:N", title="", scale=alt.Scale(
            domain=["min", "zero", "max"], range=[ACCENT, ZERO, ACCENT])),
        tooltip=["what:N", alt.Tooltip("at:Q", format=".4f")])
    text = (f"{result.x.size} float values arrive at {describe_layer(result.layer)} while reading "
            f"'{result.word}'; they span {result.x_min:.3f} to {result.x_max:.3f}.")
    return Figure(readable(alt.layer(bars, rules).properties(height=HEIGHT)), text)


def scales_chart(scales: pd.DataFrame) -> Figure:
    """2. The run-time scale each input got (``dynamic_multiply.scales_of``): one bar per input."""
    labels = [f"{w} ({s})" if len(s) < 30 else w for w, s in zip(scales["word"], scales["source"])]
    if len(set(labels)) < len(labels):  # two prompts ending in the same word: one bar each, not two in one band
        labels = [f"{w} (input {i + 1})" for i, w in enumerate(scales["word"])]
    table = scales.assign(input=labels)
    chart = alt.Chart(table).mark_bar(color=SCALE).encode(
        # The labels in the spec (not sort=None): new labels then redraw the chart whole, so its width fits them
        # (updated in place, a long label pushed the plot past the right edge on a phone).
        y=alt.Y("input:N", title="", sort=labels, axis=alt.Axis(labelLimit=320)),  # 'He (test position 1,000)' whole
        # Two title lines and few ticks: beside a label like 'He (test position 1,000)' a phone leaves ~200 px.
        x=alt.X("scale:Q", title=["activation scale", "(float per integer step)"],
                axis=alt.Axis(tickCount=4, labelFlush=True)),
        tooltip=["word", "source", alt.Tooltip("scale:Q", format=".3g"), "zero_point:Q",
                 alt.Tooltip("x_min:Q", format=".3f"), alt.Tooltip("x_max:Q", format=".3f")],
    ).properties(height=max(HEIGHT, 50 * len(table)))
    if len(table) >= 2 and table["scale"].nunique() > 1:
        hi, lo = table.loc[table["scale"].idxmax()], table.loc[table["scale"].idxmin()]
        text = (f"Dynamic: the scale is computed from each input at run time — '{hi['word']}' gets "
                f"{hi['scale']:.3g}, '{lo['word']}' {lo['scale']:.3g} ({hi['scale'] / lo['scale']:.2f}× as large).")
    else:
        row = table.iloc[0]
        text = (f"Scale {row['scale']:.3g} and zero point {int(row['zero_point'])}, computed from this input's "
                "min and max at run time; another input gets another scale.")
    return Figure(readable(chart), text)


def codes_chart(result: DynamicMultiply) -> Figure:
    """3. Each float activation against the unsigned integer it becomes: a staircase of step = scale."""
    table = result.activation_table()
    chart = alt.Chart(table).mark_circle(size=40, color=FLOAT).encode(
        x=alt.X("float:Q", title="float activation"),
        y=alt.Y("code:Q", title=f"integer code ({result.qmin}–{result.qmax})",
                scale=alt.Scale(domain=[result.qmin, result.qmax])),
        tooltip=["index:Q", alt.Tooltip("float:Q", format=".4f"), "code:Q",
                 alt.Tooltip("dequantized:Q", format=".4f"), alt.Tooltip("error:Q", format=".2e")],
    ).properties(height=HEIGHT)
    used = len(np.unique(result.x_codes))
    text = (f"Codes {result.qmin}–{result.qmax} only: on x86 PyTorch keeps activations to 7 bits (reduce_range) so "
            f"the int8 multiply's int16 pair sums cannot overflow; {used} codes used, 0.0 is code "
            f"{result.x_zero_point}, rounding error at most {np.abs(table['error']).max():.2g}.")
    return Figure(readable(chart), text)


def weights_chart(result: DynamicMultiply, rows: int = 8, columns: int = 16) -> Figure:
    """4. A heatmap of the first int8 weights (codes in tooltips), with the scale(s) in the takeaway.

    The colours span the shown codes (±their largest |code|), not all of int8: trained weights sit near 0, and on
    a ±128 scale they would all be the same pale colour."""
    rows, columns = min(rows, result.w_codes.shape[0]), min(columns, result.w_codes.shape[1])
    shown = result.w_codes[:rows, :columns].astype(int)
    reach = max(int(np.abs(shown).max()), 1)
    qmin, qmax = levels(8)
    grid = [{"row": i, "column": j, "code": int(shown[i, j])} for i in range(rows) for j in range(columns)]
    chart = alt.Chart(pd.DataFrame(grid)).mark_rect().encode(
        x=alt.X("column:O", title="input"), y=alt.Y("row:O", title="output row"),
        color=alt.Color("code:Q", title=["int8 code", f"(of {qmin}…{qmax})"],
                        scale=alt.Scale(scheme="redblue", domain=[-reach, reach])),
        tooltip=["row:O", "column:O", "code:Q"]).properties(height=max(HEIGHT, 26 * rows))
    if result.per_channel:
        scale_text = (f"one scale per row ({len(result.w_scales):,} rows, {result.w_scales.min():.3g} to "
                      f"{result.w_scales.max():.3g})")
    else:
        scale_text = f"one scale for the whole tensor ({float(result.w_scales[0]):.3g})"
    text = (f"The {result.w_codes.shape[0]:,}×{result.w_codes.shape[1]:,} weights were rounded to int8 once, ahead of "
            f"time, with {scale_text}; first {rows} rows × {columns} inputs shown, coloured over ±{reach} (their "
            f"largest |code|): int8 runs {qmin} to {qmax}, and this tensor's codes reach {int(result.w_codes.min())} "
            f"to {int(result.w_codes.max())}.")
    return Figure(readable(chart), text)


def accumulation_chart(result: DynamicMultiply, outputs: int = 64) -> Figure:
    """5. The int32 sums for the first outputs, and the float they rescale to."""
    table = result.output_table().head(outputs)
    sums = alt.Chart(table).mark_bar(color=INT32_SUM).encode(
        x=alt.X("index:O", title="output", axis=alt.Axis(labelOverlap=True)),
        y=alt.Y("corrected:Q", title=["int32 sum", "− zero-point term"]),  # two lines: one is cut at 240 px
        tooltip=["index:Q", "accumulator:Q", "zero_point_term:Q", "corrected:Q",
                 alt.Tooltip("output_scale:Q", format=".6g"), alt.Tooltip("bias:Q", format=".5f"),
                 alt.Tooltip("quantized:Q", format=".4f")],
    ).properties(height=HEIGHT)
    scale = float(result.output_scales[0]) if not result.per_channel else None
    how = f"× {scale:.4g} (activation scale × weight scale)" if scale else "× activation scale × each row's scale"
    text = (f"Integer products add up in int32 (largest |sum| {int(np.abs(result.accumulator).max()):,}, "
            f"{result.int32_headroom:.3%} of int32's range); each sum minus zero point × row sum, {how}, "
            f"plus the float bias, is the output.")
    return Figure(readable(sums), text)


def error_chart(result: DynamicMultiply, max_points: int = 4000) -> Figure:
    """6. Error of each output against the float layer's output (the decoder's 33k outputs thinned to
    ``max_points``: the worst tenth of them plus an even spread of the rest)."""
    table = result.output_table()[["index", "float", "quantized", "error"]]  # what the chart shows: half the bytes
    if len(table) > max_points:
        worst = table["error"].abs().nlargest(max_points // 10).index
        spread = np.linspace(0, len(table) - 1, max_points - len(worst)).astype(int)
        table = table.loc[sorted(set(worst) | set(spread))]
    chart = alt.Chart(table).mark_circle(size=30, opacity=0.6, color=ACCENT).encode(
        # 10 px past the extreme outputs: the largest one's dot is not cut in half at the right edge
        x=alt.X("float:Q", title="float layer output", scale=alt.Scale(zero=False, nice=True, padding=10)),
        y=alt.Y("error:Q", title="quantized − float"),
        tooltip=["index:Q", alt.Tooltip("float:Q", format=".4f"), alt.Tooltip("quantized:Q", format=".4f"),
                 alt.Tooltip("error:Q", format=".2e")],
    ).properties(height=HEIGHT)
    worst = float(np.abs(result.error).max())
    text = (f"{result.output.size:,} outputs: SQNR {result.sqnr_db:.1f} dB (about {result.sqnr_db / 6.02:.1f} bits "
            f"kept): the largest error is {worst:.3g}, "
            f"{worst / max(float(np.abs(result.float_output).max()), 1e-12):.2%} of the largest output.")
    return Figure(readable(chart), text)


def moved_scores_chart(table: pd.DataFrame) -> Figure:
    """6b. For the decoder: the words whose next-word probability moved most (``dynamic_multiply.moved_scores``)."""
    long = table.melt(id_vars=["word"], value_vars=["float_prob", "quantized_prob"], var_name="model", value_name="p")
    long["model"] = long["model"].str.replace("_prob", "")
    chart = alt.Chart(long).mark_bar().encode(
        y=alt.Y("word:N", sort=list(table["word"]), title=""),
        x=alt.X("p:Q", title="next-word probability"),
        yOffset="model:N",
        color=alt.Color("model:N", scale=MODEL_COLORS),
        tooltip=["word", "model", alt.Tooltip("p:Q", format=".4f")],
    ).properties(height=max(HEIGHT, 34 * len(table)))
    top = table.iloc[0]
    text = (f"'{top['word']}' moved most: {top['float_prob']:.2%} → {top['quantized_prob']:.2%} "
            f"(rank {int(top['float_rank'])} → {int(top['quantized_rank'])}).")
    return Figure(readable(chart), text)
