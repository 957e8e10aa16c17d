"""The When int8 pays tab: float and int8 tokens per second against batch size for each of torch's quantized
engines on this CPU, the time of each part at the smallest and largest batch, and what to notice. Every number
comes from ``wlm.speedup``."""
from __future__ import annotations

import streamlit as st

from wlm import hosting
from wlm.errors import WlmError
from wlm.qengine import available_engines, current_engine
from wlm.speedup import DEFAULT_BATCHES, DEFAULT_TOKENS, SPEEDUP_NAMES, CpuInfo, SpeedupResult, cpu_info, notes

from .backend import speedup_probe, speedup_sweep
from .charts import speedup as charts
from .requests import Setup
from .widgets import ask, error, need_corpus, remembered_button, shared_caption, show, split_slider

AGAIN = "int8pays_again"  # session state: how often this session asked to measure again
BATCH_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PROBE_BATCHES = (1, 64)  # the estimate's probe; speeds between them are interpolated, beyond them the nearest
LONGEST_TOKENS = 10 * DEFAULT_TOKENS  # the slider's end off a shared server: longer teaches nothing more
FORMATS = {SPEEDUP_NAMES["float_tokens_per_s"]: "{:,.0f}", SPEEDUP_NAMES["int8_tokens_per_s"]: "{:,.0f}",
           SPEEDUP_NAMES["speedup"]: "{:.2f}×"}

INTRO = ("Quantizing the tutorial's way makes the model about a third smaller, but whether it makes it **faster** "
         "depends on how many texts it reads at once (the batch), on the CPU, and on the engine that packs the int8 "
         "weights (`torch.backends.quantized.engine`, set before quantizing). This tab times float against int8 at "
         "each batch under every engine this CPU offers, on one thread, forward only.")
INSTRUCTION_HELP = {
    "AVX2": "256-bit vectors: 8 floats or 32 bytes per instruction; fbgemm's int8 kernels need at least this.",
    "AVX-512F": "512-bit vectors: 16 floats per instruction, for float's matrix products as much as int8's.",
    "AVX-512 VNNI": "One instruction multiplies 8-bit numbers and adds the products into 32-bit sums. Without it, "
                    "int8 products pass through 16-bit sums, which is why activations use 7 bits (reduce_range).",
    "AMX": "Tile registers and a matrix unit that multiply whole blocks of int8 or bfloat16 numbers at once; "
           "onednn's int8 matrix products use it where the CPU has it.",
    "NEON": "ARM's 128-bit vectors, which qnnpack's kernels are written for.",
    "dot product": "ARM's int8 dot-product instructions (SDOT and UDOT).",
    "SVE": "ARM's scalable vectors.",
}


def cpu_panel(cpu: CpuInfo) -> None:
    st.subheader("This CPU")
    capability = f"`{cpu.capability}`" if cpu.capability else "no vector extension it names"
    st.markdown(f"**{cpu.name}**. torch's own float kernels use {capability} "
                "(`torch.backends.cpu.get_cpu_capability()`); the int8 kernels are the engine's.")
    sets = cpu.instruction_sets
    for column, (label, present) in zip(st.columns(len(sets)), sets.items()):
        column.metric(label, "yes" if present else "no", help=INSTRUCTION_HELP.get(label))


def estimate_note(seconds: float, engines: list[str], batches: list[int], tokens: int, cpu: CpuInfo) -> str:
    walks = f"{len(engines)} engine{'s' if len(engines) > 1 else ''} × {len(batches)} batch size" + (
        "s" if len(batches) > 1 else "")
    slow = " (qnnpack, made for ARM, takes longer on this x86 CPU)" if "qnnpack" in engines and not cpu.arm else ""
    return (f"{walks}, float and int8 taking turns on the same {tokens:,} test tokens, one thread: about "
            f"{seconds:.0f} s here, estimated from a short probe of float and {current_engine()} int8{slow}.")


def show_result(result: SpeedupResult) -> None:
    st.caption(f"Measured on {result.cpu.name}: {result.setting()}.")
    show(charts.speedup_chart(result.table))
    st.dataframe(result.table.rename(columns=SPEEDUP_NAMES).style.format(FORMATS), hide_index=True)
    if result.parts is not None and not result.parts.empty:
        st.subheader("Which part gains")
        batches = sorted(result.parts["batch"].unique())
        st.caption(f"Each part's time per token under {result.parts['engine'].iloc[0]}, float and int8, at batch "
                   + " and ".join(str(b) for b in batches) + ", from the same walks as the chart above.")
        show(charts.parts_chart(result.parts, result.bptt))
    st.subheader("What to notice")
    st.markdown("\n".join(f"- {note}" for note in notes(result.table, result.cpu)))


def render(setup: Setup) -> None:
    st.markdown(INTRO)
    cpu = cpu_info()
    cpu_panel(cpu)
    if not need_corpus(setup):
        return
    hosted = setup.hosted
    st.subheader("Speedup against batch size")
    offered_engines = available_engines()
    offered_batches = [b for b in BATCH_CHOICES if not hosted or b <= hosting.MAX_SPEEDUP_BATCH]
    left, right = st.columns(2)
    chosen = left.multiselect("Engines", offered_engines, default=offered_engines, key="int8pays_engines",
                              persist_state="page",
                              help="torch's quantized engines on this CPU; each packs the int8 weights its own way.")
    engines = [e for e in offered_engines if e in chosen]  # one order, whatever order they were picked in
    batches = sorted(right.multiselect("Batch sizes", offered_batches, key="int8pays_batches", persist_state="page",
                                       default=[b for b in DEFAULT_BATCHES if b in offered_batches],
                                       help="How many streams of the test tokens the model reads at once."))
    tokens = split_slider(setup, "Test tokens each measurement reads", DEFAULT_TOKENS, "int8pays_tokens",
                          longest=LONGEST_TOKENS, limit=hosting.MAX_SPEEDUP_TOKENS,
                          shared=f"This shared server times at most {hosting.MAX_SPEEDUP_TOKENS:,} tokens and batches "
                                 f"up to {hosting.MAX_SPEEDUP_BATCH}, so that one sweep stays near 30 s.",
                          help="The same first tokens of the test split at every batch: a batch of 16 reads them as "
                               "16 streams, each a sixteenth as long.")
    if not engines or not batches:
        st.info("Choose at least one engine and one batch size.")
        return
    if tokens // batches[-1] < 2:
        st.info(f"{tokens:,} tokens are too few for batch {batches[-1]}: each of its streams needs at least 2. "
                "Move the slider up or leave out the largest batches.")
        return
    probed = ask(speedup_probe, setup.source, setup.split, *PROBE_BATCHES)
    st.caption(estimate_note(probed.seconds(tokens, batches, len(engines)), engines, batches, tokens, cpu))
    request = (setup.source, setup.split, tuple(engines), tuple(batches), int(tokens), hosted)
    if remembered_button("Time every engine and batch", "int8pays_go", request):
        try:
            measured = ask(speedup_sweep, *request, st.session_state.get(AGAIN, 0))
        except WlmError as exc:
            error(exc, setup)
            return
        shared_caption(measured, "engines, batches and tokens", AGAIN)
        show_result(measured.value)
