"""The Speed & accuracy tab: the tutorial's table of size, loss and speed per variant, and the thread sweep."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.benchmark import engine_labels
from wlm.errors import WlmError
from wlm.quantize import PRESETS, QuantSpec
from wlm.threads import in_words

from . import glossary
from .backend import default_tokens, sweep_table, variant_table
from .charts import speed as charts
from .charts.style import pct
from .requests import Setup
from .widgets import (
    ask,
    bound_note,
    error,
    listed,
    need_corpus,
    remembered_button,
    shared_caption,
    show,
    token_slider,
)

AGAIN = "speed_again"  # session state: how often this session asked to measure again
FORMATS = {"size_mb": "{:.2f}", "loss": "{:.4f}", "ppl": "{:.2f}", "seconds": "{:.2f}", "tokens_per_s": "{:,.0f}",
           "speedup": "{:.2f}×"}  # the table's numbers, under the names of ``glossary.column_config``


def predictions_note(tokens: int) -> str:
    """What a token count scores: the evaluation reads N tokens and predicts each one's next, N - 1 in all."""
    return (f"{tokens:,} tokens ({tokens - 1:,} predictions): the model reads each token and predicts the next, "
            "and the progress bar counts the predictions.")


def sweep_note(sweep, table, sweep_tokens: int, tokens: int, threads: int) -> str:
    """Why the sweep's speed at the table's thread count is not the table's, with both figures when both are on
    the page (``table`` is None when it is not)."""
    text = (f"Why its speeds differ from the table's: the sweep times {sweep_tokens:,} tokens at each thread count, "
            f"the table {tokens:,} once per variant, both with the same evaluation; a timing on a machine shared with "
            "other work moves from run to run, a short one most. Compare speeds within the chart or within the "
            "table, not across them.")
    if table is None:
        return text
    rows = table[table["engine"] == "torch"] if "engine" in table else table
    same = []
    for variant, group in sweep[sweep["threads"] == threads].groupby("variant", sort=False):
        match = rows[rows["variant"] == variant]
        if len(match):
            swept, timed = float(group["tokens_per_s"].iloc[0]), float(match["tokens_per_s"].iloc[0])
            same.append(f"{variant} {swept:,.0f} tokens/s in the sweep and {timed:,.0f} in the table "
                        f"({pct(abs(swept - timed) / max(swept, timed))} apart)")
    if same:
        text += f" At {in_words(threads)}, measured here: " + "; ".join(same) + "."
    return text


def selected_specs(setup: Setup, names: list[str]) -> tuple[QuantSpec, ...]:
    specs = [PRESETS[n] for n in names]
    if not setup.spec.is_float and setup.spec not in specs:
        specs.insert(0, setup.spec)
    return tuple(specs)


def render(setup: Setup) -> None:
    if not need_corpus(setup):
        return
    glossary.expander(["loss", "perplexity", "predictions", "tokens/s", "speedup", "size (MB)", "engine"])
    default = ask(default_tokens, setup.source, setup.split)
    tokens = token_slider("Test tokens to evaluate", hosting.token_bound(len(setup.test_ids), setup.hosted), default,
                          "speed_tokens",
                          help="The default takes about 5 s here for float and the tutorial's variant.")
    st.caption(predictions_note(int(tokens)))
    if setup.hosted:
        st.caption(bound_note(hosting.MAX_TOKENS))
    names = st.multiselect("Variants (the sidebar's setup is always included)", [n for n in PRESETS if n != "fp32"],
                           default=["tutorial"], key="speed_variants", persist_state="page")
    specs = selected_specs(setup, names)
    with_ort = st.checkbox("Also run ONNX Runtime (its float export and its int8 quantize_dynamic model)",
                           key="speed_ort", persist_state="page",
                           help="Same tokens, same harness and thread count; size is the .onnx file.")
    engines = ("torch", "onnxruntime") if with_ort else ("torch",)
    request = (setup.source, setup.split, specs, int(tokens), setup.threads, engines)
    table = None
    if remembered_button("Run evaluation", "speed_go", request):
        try:
            measured = ask(variant_table, *request, st.session_state.get(AGAIN, 0))
        except WlmError as exc:
            error(exc, setup)
            return
        table = engine_labels(measured.value)
        if measured.shared:  # some rows were timed for another visitor's table, the others for this one
            shared_caption(measured, "model, tokens and threads", AGAIN, done=f"{listed(measured.shared)} were timed",
                           saved="so this page timed only its other rows")
        else:
            shared_caption(measured, "setup and tokens", AGAIN)
        st.dataframe(table.style.format(FORMATS), hide_index=True, column_config=glossary.column_config(table))
        a, b = st.columns(2)
        with a:
            show(charts.variants_size_chart(table))
        with b:
            show(charts.throughput_chart(table))
    st.subheader("Threads")
    sweep_spec = setup.spec if not setup.spec.is_float else PRESETS["tutorial"]
    sweep_tokens = max(min(len(setup.test_ids), 100), int(tokens) // 4)
    sweep_tokens = hosting.bounded_tokens(sweep_tokens, setup.hosted, hosting.MAX_SWEEP_TOKENS)
    top = hosting.sweep_threads(setup.hosted)[-1]
    st.caption(f"Float vs {sweep_spec.label} at 1 … {top} threads on {sweep_tokens:,} tokens.")
    sweep_request = (setup.source, sweep_spec, setup.split, sweep_tokens, setup.hosted)
    if remembered_button("Sweep threads", "sweep_go", sweep_request):
        sweep = ask(sweep_table, *sweep_request)
        show(charts.thread_chart(sweep))
        st.caption(sweep_note(sweep, table, sweep_tokens, int(tokens), setup.threads))
