"""The Walkthrough tab: the tutorial as eight lesson cards, one on screen at a time, for a class to follow.

Each card shows the code of a lesson (``wlm.walkthrough``), what that code printed when run on the model and corpus
loaded now, and what to notice. The step is in the address bar (``?step=4``), so a shared link opens that card.
"""
from __future__ import annotations

import importlib.util

import streamlit as st

from wlm import charts, hosting
from wlm.memory import release_memory
from wlm.notebook import NOTEBOOK_FILE, SCRIPT_FILE, ZIP_FILE, walkthrough_zip
from wlm.threads import num_threads
from wlm.walkthrough import LESSONS, TORCHAO_NOTE, LessonRun, marked_architecture, run_lesson, size_table, speed_table

from .cached import page_turn, timing_turn, waited_caption
from .setup import Setup, link_to_tab
from .widgets import need_corpus

STEP = "walk_step"  # session state and, as 'step', the query parameter
DEFAULT_TOKENS = 1000  # float and quantized take about 2 s on it here


def step_from(raw) -> int:
    """The step a link asks for; anything but a whole number from 1 to 8 means step 1."""
    try:
        step = int(raw)
    except (TypeError, ValueError):
        return 1
    return step if 1 <= step <= len(LESSONS) else 1


def _move(by: int) -> None:
    st.session_state[STEP] = min(max(1, st.session_state[STEP] + by), len(LESSONS))


# --- the lessons, run once per model (and corpus, seed, tokens) and shared by every session ---------------------

def _names(setup: Setup, tokens: int = DEFAULT_TOKENS) -> dict:
    return {"model": setup.model, "loaded": setup.loaded, "corpus": setup.corpus, "dictionary": setup.dictionary,
            "seed": setup.seed, "tokens": tokens}


@st.cache_resource(show_spinner="Quantizing, as the tutorial does…", max_entries=1)
def _quantized_lesson(source_key: str, _setup: Setup) -> LessonRun:
    # Holds lesson 5's quantized model (about 80 MB for the bundled one), which lessons 6 and 7 measure.
    run = run_lesson(5, _names(_setup))
    release_memory()  # quantize_dynamic's temporary copy of the float model
    return run


@st.cache_data(show_spinner="Running the lesson's code…", max_entries=32)
def _lesson(number: int, source_key: str, corpus_key: str, seed: int, tokens: int, _setup: Setup) -> LessonRun:
    earlier = {5: _quantized_lesson(source_key, _setup).values} if 5 in LESSONS[number - 1].needs else {}
    if number != 7:
        with page_turn("walk_lesson", number, source_key):  # lesson 6 serializes copies, lesson 8 makes variants
            run = run_lesson(number, _names(_setup, tokens), earlier)
        release_memory()
        return run
    # A timing: alone on the server, on one thread, as the tutorial.
    with timing_turn("walk_lesson", number, source_key, corpus_key, seed, tokens), num_threads(1):
        return run_lesson(number, _names(_setup, tokens), earlier)


def bounded_tokens(tokens: int, setup: Setup) -> int:
    """Whatever the page sent, a shared server's lesson holds the timing queue for seconds, not minutes."""
    return hosting.clamp_tokens(tokens, hosting.MAX_TOKENS).tokens if setup.hosted else tokens


def lesson_run(number: int, setup: Setup, tokens: int = DEFAULT_TOKENS) -> LessonRun:
    if number == 5:
        return _quantized_lesson(setup.source_key, setup)
    tokens = bounded_tokens(tokens, setup)
    # Only what a lesson reads is in its key: lesson 4 the seed, lesson 7 the tokens.
    key = (number, setup.source_key, setup.corpus_key if number in (2, 7) else "", setup.seed if number == 4 else 0,
           tokens if number == 7 else 0)
    run = _lesson(*key, setup)
    if number == 7:
        waited_caption("walk_lesson", *key)
    return run


# --- the cards ----------------------------------------------------------------------------------------------------

def _output(run: LessonRun) -> None:
    st.code(run.output.rstrip(), language="text", wrap_lines=True)


def _weights_output(run: LessonRun, setup: Setup) -> None:
    facts = run.values["facts"]
    st.table({"": list(facts), "from the card": [str(v) for v in facts.values()]}, hide_index=True)
    if setup.loaded.card:
        with st.expander("The full model card"):
            st.json({k: v for k, v in setup.loaded.card.items() if k != "weights_sha256"}, expanded=1)


def _speed_output(run: LessonRun, tokens: int) -> None:
    table = speed_table(run.values["results"], tokens)
    shown = table.astype(object)
    for measure, form in zip(table.index, ("{:.1f}", "{:.3f}", "{:.2f}")):  # MB, loss, seconds
        shown.loc[measure] = [form.format(x) for x in table.loc[measure]]
    st.table(shown)
    st.caption("Here: the first tokens of the test split on this machine. The tutorial: its own pretrained weights, "
               "the whole test split, one thread, a MacBook.")


# Where the app shows what the tutorial left out: (what, tab, the module that draws the tab).
BEYOND = [
    ("The embedding, the biggest part, quantized to 8 or 4 bits (sidebar: Embedding)", "Model", "model_tab"),
    ("Per-channel scales and float16 weights: size against loss for every preset", "Fidelity", "fidelity_tab"),
    ("Another engine: ONNX Runtime's float and int8 models beside PyTorch's", "Speed & accuracy", "speed_tab"),
    ("One int8 multiply of the model, stage by stage, on a real input", "Inside a multiply", "multiply_tab"),
    ("Weights rounded to 8 down to 2 bits: where the loss breaks", "Fewer bits", "bits_tab"),
]


def _beyond_links() -> None:
    # A link opens the page again on that tab with the same setup: switching tabs from code would make every
    # tab switch rerun the whole page, which would cut short a generation still running in another tab.
    lines = [f"- [**{tab}**]({link_to_tab(tab)}) tab: {what}" for what, tab, module in BEYOND
             if importlib.util.find_spec(f"ui.{module}") is not None]  # only tabs this app has
    st.markdown("Go further, in the tabs above (or follow a link):\n" + "\n".join(lines))
    st.info(TORCHAO_NOTE)


def _tokens(total: int, hosted: bool) -> int:
    """How many test tokens step 7 evaluates: a few round sizes, up to the whole split (the tutorial's choice),
    or up to the hosted bound on a shared server."""
    limit = min(total, hosting.MAX_TOKENS) if hosted else total
    sizes = [n for n in (500, 1000, 2000, 5000, 10_000, 20_000, 50_000) if n < limit] + [limit]
    if len(sizes) == 1:
        return limit
    default = DEFAULT_TOKENS if DEFAULT_TOKENS in sizes else sizes[0]
    label = (f"Test tokens (the first of the test split; this shared server times at most {limit:,})" if hosted
             and limit < total else "Test tokens (the first of the test split; the last choice is all of it, as "
             "the tutorial)")
    return st.select_slider(label, sizes, default, format_func=lambda n: f"{n:,}", key="walk_tokens")


def _card(number: int, setup: Setup) -> None:
    # Code above its output, each the full width: side by side, a projector would wrap every line of both.
    lesson = LESSONS[number - 1]
    tokens = DEFAULT_TOKENS
    st.markdown("**The code**")
    st.code(lesson.code.rstrip(), language="python")
    st.caption("`model`, `loaded`, `corpus`, `dictionary` and `seed` are what the sidebar set up"
               + (", `quantized` what step 5 made" if lesson.needs else "")
               + (", `tokens` the slider below" if number == 7 else "") + ".")
    if number == 7:
        tokens = bounded_tokens(_tokens(len(setup.test_ids), setup.hosted), setup)
    st.markdown("**What it printed, run now**")
    run = lesson_run(number, setup, tokens)
    if number == 3:
        _weights_output(run, setup)
    elif number == 4:
        st.markdown(charts.paired_html(run.values["words"], None), unsafe_allow_html=True)
    elif number == 5:
        st.code(marked_architecture(setup.model, run.values["quantized"]), language="diff", wrap_lines=True)
        st.caption("Lines marked + are the modules the call replaced.")
    elif number == 6:
        st.table(size_table(run.values["sizes"]).style.format("{:.1f} MB"))
    elif number == 7:
        _speed_output(run, tokens)
    else:
        _output(run)
    st.success(f"**What to notice:** {run.notice}")
    if number == 8:
        _beyond_links()


def _ready(number: int, setup: Setup) -> bool:
    """Whether what lesson ``number`` reads is loaded; otherwise says what is missing."""
    if number == 2 and setup.corpus is None:
        st.info(setup.missing)
        return False
    if number == 4 and setup.dictionary is None:
        st.info(setup.missing)
        return False
    return number != 7 or need_corpus(setup)


def _take_home(setup: Setup) -> None:
    """The download of the whole walkthrough, on every card: the notebook and the script in one zip."""
    seed, tokens = setup.seed, int(st.session_state.get("walk_tokens", DEFAULT_TOKENS))
    # Made when clicked (a few milliseconds, no model involved): most visitors never press it.
    st.download_button(f":material/download: Take it home: the walkthrough as a notebook and a script ({ZIP_FILE})",
                       data=lambda: walkthrough_zip(seed=seed, tokens=tokens), file_name=ZIP_FILE,
                       mime="application/zip", on_click="ignore", key="walk_download",
                       help=f"{NOTEBOOK_FILE} and {SCRIPT_FILE}: every step's code as the cards show it, under its "
                            "title, with this seed and step 7's token count. Unpack them into the root folder of a "
                            "clone of the wlm repository and run them there: their first cell loads the bundled "
                            "model and corpus from its assets/ folder.")


def render(setup: Setup) -> None:
    if STEP not in st.session_state:
        st.session_state[STEP] = step_from(st.query_params.get("step"))
    number = st.session_state[STEP]
    st.query_params["step"] = str(number)
    back, where, forward = st.columns([1, 4, 1], vertical_alignment="center")
    back.button("← Previous", key="walk_prev", on_click=_move, args=(-1,), disabled=number == 1, width="stretch")
    forward.button("Next →", key="walk_next", on_click=_move, args=(1,), disabled=number == len(LESSONS),
                   width="stretch", type="primary")
    where.markdown(f"#### Step {number} of {len(LESSONS)}: {LESSONS[number - 1].title}")
    st.progress(number / len(LESSONS))
    _take_home(setup)
    if _ready(number, setup):
        _card(number, setup)
