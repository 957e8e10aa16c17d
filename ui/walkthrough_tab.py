"""The Walkthrough tab: the tutorial as lesson cards, one on screen at a time, for a class to follow.

Each card shows the code of a lesson (``wlm.lessons``), what that code printed when run on the model and corpus
loaded now, and what to notice. Every card is drawn the same way from what its lesson declares; how its output is
shown is ``PRESENTERS[lesson.shows]``. The step is in the address bar (``?step=4``), so a shared link opens that
card.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st

from wlm import hosting
from wlm.lessons import (
    LESSON_TOKENS,
    LESSONS,
    PROBE_TOKENS,
    TORCHAO_NOTE,
    Lesson,
    LessonRun,
    marked_architecture,
    size_table,
    speed_table,
)
from wlm.notebook import NOTEBOOK_FILE, SCRIPT_FILE, ZIP_FILE, walkthrough_zip

from .backend import lesson_estimate, lesson_run
from .charts import word_html
from .requests import Setup
from .setup import OPEN_TAB, WALKTHROUGH, link_to_tab
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


def _value(value, digits: int = 6) -> str:
    """One value of a model card as a table cell."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):  # 0.5 stays 0.5, 0.0 stays 0.0 (a float), a long loss is cut to a few digits
        return f"{value:.1f}" if value.is_integer() else f"{value:.{digits}g}"
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_value, value))
    return str(value)


@dataclass(frozen=True)
class CardTable:
    """One table of a model card: its title (none for the card's plain fields), its rows, and a line above it."""

    title: str
    table: pd.DataFrame
    note: str = ""


def _records_table(name: str, listed: list[dict]) -> CardTable:
    """A list of records (the training history) as a row per record, narrow enough for a phone: 4 digits, headers
    that wrap at their words, and a field with one value in every record said once above the table instead."""
    cells = [{k: _value(v, 4) for k, v in row.items()} for row in listed]
    keys = list(dict.fromkeys(k for row in cells for k in row))
    same = [k for k in keys[1:] if len(cells) > 1 and len({row.get(k) for row in cells}) == 1]
    table = pd.DataFrame([{k.replace("_", " "): row.get(k, "—") for k in keys if k not in same} for row in cells])
    note = f"In every row: {', '.join(f'{k} {cells[0][k]}' for k in same)}." if same else ""
    return CardTable(name, table, note)


def card_tables(card: dict) -> list[CardTable]:
    """A model card as tables a class can read: first the card's plain fields, one row each (field, value); then
    each record in it (the recipe, the config) as a (field, value) table of its own, and each list of records (the
    training history) as a table of one row per record. The weights' hash is left out."""
    fields = {k: v for k, v in card.items() if k != "weights_sha256"}
    records = {k: v for k, v in fields.items() if isinstance(v, dict) and v}
    rows = {k: v for k, v in fields.items()
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}
    plain = {k: v for k, v in fields.items() if k not in records and k not in rows}

    def pairs(title: str, values: dict) -> CardTable:
        return CardTable(title, pd.DataFrame({"field": list(values), "value": [_value(v) for v in values.values()]}))

    return ([pairs("", plain)] if plain else []) + [pairs(name, record) for name, record in records.items()] + [
        _records_table(name, listed) for name, listed in rows.items()]


def _facts(run: LessonRun, setup: Setup, tokens: int) -> None:
    facts = run.values["facts"]
    st.table({"": list(facts), "from the card": [str(v) for v in facts.values()]}, hide_index=True)
    if setup.loaded.card:
        with st.expander("The full model card"):
            for part in card_tables(setup.loaded.card):
                if part.title:
                    st.markdown(f"**{part.title}**")
                if part.note:
                    st.caption(part.note)
                st.table(part.table, hide_index=True)


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
    ("Why dynamic: activation scales fixed from calibration against scales picked at run time", "Static or dynamic"),
    ("Where int8 stops paying: every quantized engine of this CPU against batch size", "When int8 pays"),
    ("Which part costs what: each part quantized alone, and bits per part under a size budget", "Which parts"),
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
    return st.select_slider(label, sizes, default, format_func=lambda n: f"{n:,}", key="walk_tokens",
                            persist_state="page")


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


def _seconds(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    return f"about {seconds:.1f} s" if seconds < 10 else f"about {seconds:,.0f} s"


def _estimate_caption(lesson: Lesson, seconds: dict[str, float], tokens: int) -> str:
    """What the run will take, before it starts: from a probe of each model the lesson evaluates, timed here."""
    each = ", ".join(f"`{name}` {_seconds(s)}" for name, s in seconds.items())
    threads = " on one thread" if lesson.timed else ""
    return (f":material/timer: Evaluating {_listed([f'`{name}`' for name in seconds])} on {tokens:,} test tokens "
            f"takes {_seconds(sum(seconds.values()))} here{threads} ({each}), estimated from timing each on its "
            f"first {min(PROBE_TOKENS, tokens):,} tokens on this machine (the faster of two tries).")


def _card(lesson: Lesson, setup: Setup) -> None:
    # Code above its output, each the full width: side by side, a projector would wrap every line of both.
    st.markdown("**The code**")
    st.code(lesson.code.rstrip(), language="python", wrap_lines=True)
    st.caption(_names_caption(lesson))
    if not _ready(lesson, setup):
        return
    # Whatever the page sent, a shared server's lesson holds the timing queue for seconds, not minutes.
    tokens = (hosting.bounded_tokens(_tokens(len(setup.test_ids), setup.hosted), setup.hosted)
              if "tokens" in lesson.inputs else 0)
    st.markdown("**What it printed, run now**")
    if lesson.evaluates:
        seconds = ask(lesson_estimate, lesson.number, setup.source, setup.vocabulary, setup.corpus, setup.seed,
                      tokens)
        st.caption(_estimate_caption(lesson, seconds, len(setup.test_ids[:tokens])))
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
    if st.session_state.get(OPEN_TAB, WALKTHROUGH) == WALKTHROUGH:  # the link names a card only of the open tab
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
