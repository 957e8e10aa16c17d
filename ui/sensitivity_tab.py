"""The "Which parts" tab: each part of the model quantized alone (a map of parts against widths and schemes), a
mixed-precision pick of bits per part under a size budget measured beside the uniform choices, and the pick's text
beside float's. Every number comes from ``wlm.sensitivity``."""
from __future__ import annotations

import math

import streamlit as st

from wlm import hosting
from wlm.errors import WlmError
from wlm.low_bits import DEFAULT_GROUP_SIZE, GROUP_SIZES, SCHEMES, SWEEP_BITS, SWEEP_SCHEMES
from wlm.sensitivity import DEFAULT_SENSITIVITY_TOKENS, map_cells, parts, readable_map

from . import glossary
from .backend import budget_range, map_request, mix_tradeoff, pick_texts, sensitivity_estimate, sensitivity_map
from .charts import sensitivity as charts
from .charts import word_html
from .charts.generate import same_pick_takeaway
from .requests import Setup
from .widgets import SessionPage, ask, error, need_corpus, remembered_button, show, split_slider

# The most test tokens offered off a shared server (a shared one offers hosting.MAX_SENSITIVITY_TOKENS): a map scores
# about 150 cells, some ten minutes at 5,000 tokens on one thread here, and a longer one teaches nothing more.
LONGEST_SENSITIVITY_TOKENS = 5 * DEFAULT_SENSITIVITY_TOKENS
BUDGET = "parts_budget"  # session state: the size budget's slider
# The budget offered first, of the float model's size: about what 4-bit weights take, where uniform choices start
# to break and a mix of widths shows what it is for.
BUDGET_SHARE = 0.125
TEXT_WORDS, TEXT_TEMPERATURE = 80, 1.0
MAP_TERMS = ["mean KL", "Δ loss", "real int8", "simulated", "per-tensor", "per-row", "per-group", "group size",
             "asymmetric (zero point)", "stored size (MB)", "top-1 agreement"]
BUDGET_TERMS = ["mixed precision", "uniform choice", "stored size (MB)", "bits per weight", "Δ loss", "mean KL"]
TRADE_COLUMNS = {"kind": "kind", "label": "choice", "size_mb": "stored size (MB)", "delta_loss": "Δ loss",
                 "predicted_delta_loss": "Δ loss, the map's sum", "tokens": "predictions"}


def note(layers: int) -> str:
    return (
        "**The map.** Each part of the model — the embedding, each LSTM layer (its input and recurrent weights "
        "together) and the decoder — is quantized **alone** while the rest stays float, and scored against the "
        "float model on the same test tokens. **Real int8** is torch's own dynamic kernels: to quantize one LSTM "
        f"layer, the {layers}-layer LSTM is split into one-layer LSTMs holding the same weights. Every other cell is "
        "**simulated**: the part's weights rounded to N bits (one scale per tensor, per row, or per group of G "
        "weights) and run in float.")


def _seconds(estimate: float) -> str:
    return "under a second" if estimate < 1 else f"about {estimate:.0f} s"


def _widths(chosen) -> tuple[int, ...]:
    """The widths between the range's two ends, 8 first (a link or a script may send them either way round)."""
    high, low = max(chosen), min(chosen)
    return tuple(b for b in SWEEP_BITS if low <= b <= high)


def _controls(setup: Setup) -> tuple:
    """The map's request: (source, split, schemes, widths, group size, tokens, hosted), as the server serves it."""
    hosted = setup.hosted
    left, right = st.columns([3, 1])
    chosen = left.multiselect("Schemes", list(SCHEMES), default=list(SWEEP_SCHEMES), key="parts_schemes",
                              persist_state="page",
                              help="How many weights share one scale. Every part gets real int8 as well.")
    grouped = any("per-group" in s for s in chosen)
    group_size = right.selectbox("Group size G", list(GROUP_SIZES), index=GROUP_SIZES.index(DEFAULT_GROUP_SIZE),
                                 key="parts_group", persist_state="page", disabled=not grouped,
                                 help="Weights of a row that share a scale in the per-group schemes.")
    left, right = st.columns(2)
    widths = _widths(left.select_slider("Widths", list(SWEEP_BITS), value=(SWEEP_BITS[0], SWEEP_BITS[-1]),
                                        format_func=lambda b: f"{b} bits", key="parts_widths", persist_state="page",
                                        help="The simulated widths of the map, from 8 bits down."))
    with right:
        tokens = split_slider(setup, "Test tokens", DEFAULT_SENSITIVITY_TOKENS, "parts_tokens",
                              longest=LONGEST_SENSITIVITY_TOKENS, limit=hosting.MAX_SENSITIVITY_TOKENS,
                              shared=f"This shared server scores a map on at most "
                                     f"{hosting.MAX_SENSITIVITY_TOKENS:,} tokens, so that one request stays near 30 s.",
                              help="Every cell, and later every mixed model, is scored against float on the same "
                                   "first tokens of the test split.")
    schemes, widths, group_size, tokens = map_request(chosen, widths, group_size, tokens, hosted)
    return setup.source, setup.split, schemes, widths, group_size, tokens, hosted


def render(setup: Setup) -> None:
    st.info(note(setup.model.rnn.num_layers))
    if not need_corpus(setup):
        return
    request = _controls(setup)
    _, _, schemes, widths, _, tokens, _ = request
    if not schemes:
        st.info("Choose at least one scheme.")
        return
    cells = map_cells(setup.model, bits=widths, schemes=schemes, group_size=request[4])
    estimate = sensitivity_estimate(*request, _page=SessionPage())
    count = len(parts(setup.model))
    st.caption(f"The map scores {len(cells):,} cells ({count} parts, each in real int8 and in {len(schemes)} "
               f"scheme{'s' if len(schemes) > 1 else ''} × {len(widths)} width{'s' if len(widths) > 1 else ''}) on "
               f"{tokens:,} test tokens: {_seconds(estimate)} here, one thread (estimated from a short probe).")
    if not remembered_button("Draw the map", "parts_go", request):
        return
    table = ask(sensitivity_map, *request)

    st.subheader("Each part alone")
    number = st.radio("Written on each cell", list(charts.NUMBERS), format_func=charts.NUMBERS.get, horizontal=True,
                      key="parts_number", persist_state="page")
    show(charts.map_chart(table, number))
    glossary.expander(MAP_TERMS)
    with st.expander("The map as a table", icon=":material/table:"):
        st.dataframe(readable_map(table), hide_index=True)
        st.caption("Each cell: Δ loss in nats (mean KL in brackets), the part alone at that width and scheme.")

    _budget(setup, request)


def _budget_slider(setup: Setup, smallest: float, float_mb: float) -> float:
    """A budget from the smallest mix (rounded up to a step, so every budget offered fits one) to float's size."""
    step = 10 ** math.floor(math.log10(float_mb / 200))
    decimals = max(0, -math.floor(math.log10(step)))
    low = round(math.ceil(smallest / step) * step, decimals)
    high = round(math.ceil(float_mb / step) * step, decimals)
    if low >= high:
        return high
    # A budget chosen for a map with lower widths can be out of this map's reach, and a slider refuses a value
    # below its range: say so, and start from the smallest mix instead.
    kept = st.session_state.get(BUDGET)
    if isinstance(kept, (int, float)) and not low <= kept <= high:
        if kept < low:
            error(f"No mix of this map's cells fits in {charts.mb(kept)} MB: the smallest takes {charts.mb(smallest)} "
                  f"MB, so the budget now starts there. Add lower widths to the map for smaller mixes.", setup)
        st.session_state[BUDGET] = min(max(float(kept), low), high)
    default = min(max(round(round(BUDGET_SHARE * float_mb / step) * step, decimals), low), high)
    value = st.slider("Size budget (MB)", low, high, default, step, format=f"%.{decimals}f MB", key=BUDGET,
                      persist_state="page",
                      help=f"From the smallest mix of the map's cells ({charts.mb(smallest)} MB) to the float "
                           f"model ({charts.mb(float_mb)} MB).")
    return round(float(value), decimals)


def _budget(setup: Setup, request: tuple) -> None:
    st.subheader("Mixed precision under a size budget")
    st.markdown("Each part may take its own width and scheme. The map predicts a mix's cost by adding up its parts' "
                "costs; the **pick** is the mix with the least summed mean KL that fits the budget. It is then "
                "measured as a whole model, beside every **uniform** choice of the map (all parts, the embedding "
                "too, at one width and scheme) and the best mix of each one's size.")
    smallest, float_mb = ask(budget_range, *request)
    budget = _budget_slider(setup, smallest, float_mb)
    if not remembered_button("Pick and measure", "parts_pick_go", request + (budget,)):
        return
    try:
        trade, mix = ask(mix_tradeoff, *request, budget)
    except WlmError as exc:
        error(exc, setup)
        return
    st.markdown(f"**The pick:** {mix.describe()}.")
    size, measured, predicted = st.columns(3)
    size.metric("Stored size", f"{charts.mb(mix.size_mb)} MB", f"budget {charts.mb(budget)} MB", delta_color="off",
                delta_arrow="off", help=glossary.help_text("stored size (MB)"))
    measured.metric("Δ loss, measured", f"{mix.delta_loss:+.4f}", help=glossary.help_text("Δ loss"))
    predicted.metric("Δ loss, the map's sum", f"{mix.predicted_delta_loss:+.4f}",
                     help="What the map predicted: each part's Δ loss alone at its cell, added up.")
    show(charts.tradeoff_chart(trade, mix, budget))
    glossary.expander(BUDGET_TERMS)
    with st.expander("The trade-off as a table", icon=":material/table:"):
        st.dataframe(trade[list(TRADE_COLUMNS)].rename(columns=TRADE_COLUMNS), hide_index=True, column_config={
            "stored size (MB)": st.column_config.NumberColumn(format="%.3f"),
            "Δ loss": st.column_config.NumberColumn(format="%+.4f"),
            "Δ loss, the map's sum": st.column_config.NumberColumn(format="%+.4f")})

    _texts(setup, request, budget)


def _texts(setup: Setup, request: tuple, budget: float) -> None:
    st.subheader("Write with the pick beside float")
    if setup.dictionary is None:
        st.info(setup.missing)
        return
    if not remembered_button("Write with both", "parts_text_go", request + (budget, setup.seed)):
        return
    source, split, *options = request
    (float_words, mix_words), agreed = ask(pick_texts, source, setup.vocabulary, split, *options, budget, setup.seed,
                                           TEXT_WORDS, TEXT_TEMPERATURE)
    first = agreed.first_difference
    left, right = st.columns(2)
    left.markdown("**float**")
    right.markdown("**the pick**")
    left.markdown(word_html.paired_html(float_words, first, mix_words), unsafe_allow_html=True)
    right.markdown(word_html.paired_html(mix_words, first, float_words), unsafe_allow_html=True)
    st.caption(word_html.paired_legend(first), unsafe_allow_html=True)
    st.caption(f"**Takeaway:** {same_pick_takeaway(agreed, TEXT_TEMPERATURE)} Seed {setup.seed} (sidebar), "
               f"temperature {TEXT_TEMPERATURE:g}; pick again under another budget to compare.")
