"""The Walkthrough tab: the tutorial as lesson cards, one on screen at a time, for a class to follow.

Each card shows the code of a lesson (``wlm.lessons``), what that code printed when run on the model and corpus
loaded now, and what to notice. Every card is drawn the same way from what its lesson declares; how its output is
shown is ``PRESENTERS[lesson.shows]``. The step is in the address bar (``?step=4``), so a shared link opens that
card.
"""
from __future__ import annotations

from typing import Callable

import streamlit as st

from wlm import hosting
from wlm.lessons import (
    LESSON_TOKENS,
    LESSONS,
    TORCHAO_NOTE,
    Lesson,
    LessonRun,
    marked_architecture,
    size_table,
    speed_table,
)
from wlm.notebook import NOTEBOOK_FILE, SCRIPT_FILE, ZIP_FILE, walkthrough_zip

from .backend import lesson_run
from .charts import word_html
from .requests import Setup
from .setup import link_to_tab
from .widgets import ask, need_corpus

STEP = "walk_step"  # session state and, as 'step', the query parameter
SIDEBAR_NAMES = ("model", "loaded", "corpus", "dictionary", "seed")  # what the sidebar sets up, of what lessons read


def step_from(raw) -> int:
    """The step a link asks for; anything but a whole number from 1 to the last step means step 1."""
    try:
        step = int(raw)
    except (TypeError, ValueError):
        return 1
    return step if 1 <= step <= len(LESSONS) else 1


def _move(by: int) -> None:
    st.session_state[STEP] = min(max(1, st.session_state[STEP] + by), len(LESSONS))


# --- how a card shows what its lesson gave, by the lesson's SHOWS ----------------------------------------------

def _printed(run: LessonRun, setup: Setup, tokens: int) -> None:
    st.code(run.output.rstrip(), language="text", wrap_lines=True)


def _facts(run: LessonRun, setup: Setup, tokens: int) -> None:
    facts = run.values["facts"]
    st.table({"": list(facts), "from the card": [str(v) for v in facts.values()]}, hide_index=True)
    if setup.loaded.card:
        with st.expander("The full model card"):
            st.json({k: v for k, v in setup.loaded.card.items() if k != "weights_sha256"}, expanded=1)


def _words(run: LessonRun, setup: Setup, tokens: int) -> None:
    st.markdown(word_html.paired_html(run.values["words"], None), unsafe_allow_html=True)


def _architecture(run: LessonRun, setup: Setup, tokens: int) -> None:
    st.code(marked_architecture(setup.model, run.values["quantized"]), language="diff", wrap_lines=True)
    st.caption("Lines marked + are the modules the call replaced.")


def _sizes(run: LessonRun, setup: Setup, tokens: int) -> None:
    st.table(size_table(run.values["sizes"]).style.format("{:.1f} MB"))


def _speed(run: LessonRun, setup: Setup, tokens: int) -> None:
    table = speed_table(run.values["results"], tokens)
    shown = table.astype(object)
    for measure, form in zip(table.index, ("{:.1f}", "{:.3f}", "{:.2f}")):  # MB, loss, seconds
        shown.loc[measure] = [form.format(x) for x in table.loc[measure]]
    st.table(shown)
    st.caption("Here: the first tokens of the test split on this machine. The tutorial: its own pretrained weights, "
               "the whole test split, one thread, a MacBook.")


PRESENTERS: dict[str, Callable[[LessonRun, Setup, int], None]] = {
    "printed": _printed, "facts": _facts, "words": _words, "architecture": _architecture, "sizes": _sizes,
    "speed": _speed, "links": _printed}

# Where the app shows what the tutorial left out: (what, tab).
BEYOND = [
    ("The embedding, the biggest part, quantized to 8 or 4 bits (sidebar: Embedding)", "Model"),
    ("Per-channel scales and float16 weights: size against loss for every preset", "Fidelity"),
    ("Another engine: ONNX Runtime's float and int8 models beside PyTorch's", "Speed & accuracy"),
    ("One int8 multiply of the model, stage by stage, on a real input", "Inside a multiply"),
    ("Weights rounded to 8 down to 2 bits: where the loss breaks", "Fewer bits"),
]


def _beyond_links(setup: Setup) -> None:
    # A link opens the page again on that tab with the same setup: switching tabs from code would make every
    # tab switch rerun the whole page, which would cut short a generation still running in another tab.
    lines = [f"- [**{tab}**]({link_to_tab(tab)}) tab: {what}" for what, tab in BEYOND]
    st.markdown("Go further, in the tabs above (or follow a link):\n" + "\n".join(lines))
    st.info(TORCHAO_NOTE)


# Below the notice, for a lesson whose notice points at what follows it (step 8's "the tabs named below").
BELOW_NOTICE: dict[str, Callable[[Setup], None]] = {"links": _beyond_links}


# --- the card ---------------------------------------------------------------------------------------------------

def _tokens(total: int, hosted: bool) -> int:
    """How many test tokens a lesson that reads ``tokens`` evaluates: a few round sizes, up to the whole split (the
    tutorial's choice), or up to the hosted bound on a shared server."""
    limit = hosting.token_bound(total, hosted)
    sizes = [n for n in (500, 1000, 2000, 5000, 10_000, 20_000, 50_000) if n < limit] + [limit]
    if len(sizes) == 1:
        return limit
    default = LESSON_TOKENS if LESSON_TOKENS in sizes else sizes[0]
    label = (f"Test tokens (the first of the test split; this shared server times at most {limit:,})" if hosted
             and limit < total else "Test tokens (the first of the test split; the last choice is all of it, as "
             "the tutorial)")
    return st.select_slider(label, sizes, default, format_func=lambda n: f"{n:,}", key="walk_tokens")


def _ready(lesson: Lesson, setup: Setup) -> bool:
    """Whether what the lesson reads is loaded; otherwise says what is missing."""
    reads = lesson.inputs
    if ("dictionary" in reads and setup.dictionary is None) or ("corpus" in reads and setup.corpus is None):
        st.info(setup.missing)
        return False
    # Running the model on the corpus needs the corpus's ids to be the model's words.
    return not {"model", "corpus"} <= reads or need_corpus(setup)


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _names_caption(lesson: Lesson) -> str:
    """Where each name the code reads comes from: the sidebar, an earlier step, or the slider."""
    parts = []
    sidebar = [f"`{name}`" for name in lesson.reads if name in SIDEBAR_NAMES]
    if sidebar:
        parts.append(f"{_listed(sidebar)} {'is' if len(sidebar) == 1 else 'are'} what the sidebar set up")
    parts += [f"`{name}` what step {giver} made" for name, giver in lesson.needs.items()]
    if "tokens" in lesson.reads:
        parts.append("`tokens` the slider below")
    return ", ".join(parts) + "."


def _card(lesson: Lesson, setup: Setup) -> None:
    # Code above its output, each the full width: side by side, a projector would wrap every line of both.
    st.markdown("**The code**")
    st.code(lesson.code.rstrip(), language="python")
    st.caption(_names_caption(lesson))
    if not _ready(lesson, setup):
        return
    # Whatever the page sent, a shared server's lesson holds the timing queue for seconds, not minutes.
    tokens = (hosting.bounded_tokens(_tokens(len(setup.test_ids), setup.hosted), setup.hosted)
              if "tokens" in lesson.inputs else 0)
    st.markdown("**What it printed, run now**")
    run = ask(lesson_run, lesson.number, setup.source, setup.vocabulary, setup.corpus, setup.seed, tokens)
    PRESENTERS[lesson.shows](run, setup, tokens)
    st.success(f"**What to notice:** {run.notice}")
    if lesson.shows in BELOW_NOTICE:
        BELOW_NOTICE[lesson.shows](setup)


def _take_home(setup: Setup) -> None:
    """The download of the whole walkthrough, on every card: the notebook and the script in one zip."""
    seed, tokens = setup.seed, int(st.session_state.get("walk_tokens", LESSON_TOKENS))
    # Made when clicked (a few milliseconds, no model involved): most visitors never press it.
    st.download_button(f":material/download: Take it home: the walkthrough as a notebook and a script ({ZIP_FILE})",
                       data=lambda: walkthrough_zip(seed=seed, tokens=tokens), file_name=ZIP_FILE,
                       mime="application/zip", on_click="ignore", key="walk_download",
                       help=f"{NOTEBOOK_FILE} and {SCRIPT_FILE}: every step's code as the cards show it, under its "
                            "title, with this seed and the token count of the timed step. Unpack them into the root "
                            "folder of a clone of the wlm repository and run them there: their first cell loads the "
                            "bundled model and corpus from its assets/ folder.")


def render(setup: Setup) -> None:
    if STEP not in st.session_state:
        st.session_state[STEP] = step_from(st.query_params.get("step"))
    number = st.session_state[STEP]
    st.query_params["step"] = str(number)
    lesson = LESSONS[number - 1]
    back, where, forward = st.columns([1, 4, 1], vertical_alignment="center")
    back.button("← Previous", key="walk_prev", on_click=_move, args=(-1,), disabled=number == 1, width="stretch")
    forward.button("Next →", key="walk_next", on_click=_move, args=(1,), disabled=number == len(LESSONS),
                   width="stretch", type="primary")
    where.markdown(f"#### Step {number} of {len(LESSONS)}: {lesson.title}")
    st.progress(number / len(LESSONS))
    _take_home(setup)
    _card(lesson, setup)
