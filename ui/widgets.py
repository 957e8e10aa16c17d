"""Small building blocks every tab uses: a chart with its takeaway, buttons that remember, token sliders, and the
page a backend call speaks to while it works."""
from __future__ import annotations

import contextlib
import functools
import json
import time
import uuid
from pathlib import Path

import streamlit as st

from wlm import hosting

from . import backend
from .charts.style import Figure
from .requests import CorpusSource, ModelSource, Setup, Variant, Vocabulary

OWNER = "_queue_owner"  # session state: this session's name in the server's queues
WAITED = "_waited"  # session state: the requests of this session that queued behind another visitor's
PROGRESS_EVERY = 0.2  # seconds between two moves of a progress bar (its last move, to the end, always shows)


# Streamlit has no setting for these. A tab bar wider than the page scrolls sideways behind an arrow (the last tabs
# out of sight: on a phone half of them, at 1280 px the tenth), and on a phone the title fills half the first
# screen: tabs wrap onto a second row instead, and a phone's title is smaller. And Streamlit's running figure in the
# corner is a new drawing five times a second on every page whose script runs: the twenty pages of a class waiting
# for one shared result redrew it a hundred times a second between them, on a shared machine from the cores that
# compute the result. "Stop" beside it stays, on a phone too, and says a run is under way; the page's own progress
# bars and queue notices say what.
PAGE_STYLE = """<style>
[data-testid="stTabs"] [role="tablist"] { flex-wrap: wrap; row-gap: 0.25rem; overflow: visible; }
[data-testid="stStatusWidgetRunningIcon"] { display: none; }
@media (max-width: 640px) {
  h1 { font-size: 1.75rem !important; }
}
</style>"""


def style_page() -> None:
    st.html(PAGE_STYLE)


# The parts of Streamlit's front end that draw charts and tables load the first time a page shows one, and loading
# them is part of what a page's first result costs its browser. A class's results all arrive at once, so every
# page would load them while the machine is at its busiest: the page loads them as soon as its browser is idle
# after opening, before anything is pressed.
FRONT_END_PARTS = ("ArrowVegaLiteChart", "loadVegaEmbed", "embed", "vega-interpreter", "DataFrame")
FRONT_END_FILES = Path(st.__file__).parent / "static" / "static" / "js"


@functools.cache
def front_end_modules() -> tuple[str, ...]:
    """The file of each of ``FRONT_END_PARTS`` in this Streamlit's front end (its names carry a content hash);
    a part not found once is left out, and a page without any loads them on first use, as Streamlit does."""
    found = (sorted(FRONT_END_FILES.glob(f"{part}.*.js")) for part in FRONT_END_PARTS)
    return tuple(files[0].name for files in found if len(files) == 1)


def load_front_end_ahead() -> None:
    modules = front_end_modules()
    if not modules:
        return
    # Beside Streamlit's own entry module, as its own imports resolve, so that its later import of the same file
    # finds the module already loaded. Safari has no requestIdleCallback.
    st.html(f"""<script>(() => {{
  const entry = document.querySelector("script[type='module'][src*='static/js/index.']");
  if (!entry) return;
  const load = () => {json.dumps(list(modules))}.forEach(
    (name) => import(new URL(name, entry.src).href).catch(() => {{}}));
  (window.requestIdleCallback || ((run) => setTimeout(run, 1000)))(load);
}})();</script>""", unsafe_allow_javascript=True)


def yield_to_streamlit() -> None:
    """Let Streamlit stop this run here if its page reran or closed, as any call to Streamlit would, without
    sending the browser anything (reading the session state is such a call)."""
    _ = OWNER in st.session_state


def show(figure: Figure) -> None:
    st.altair_chart(figure.chart, width="stretch")
    st.caption(f"**Takeaway:** {figure.takeaway}")


class _QueueNotice(backend.Notice):
    """The page's word on where its work waits, made the first time the work has to wait."""

    def __init__(self) -> None:
        self._box = None
        self._place = None

    def show(self, place: int) -> None:
        if place == self._place:
            # Nothing new to draw: a message a class's queued pages each got twice a second would be redrawn by
            # each of their browsers, on a shared machine from the cores the queue waits on. Reading the session
            # still lets Streamlit end this wait when the page reruns or closes.
            yield_to_streamlit()
            return
        if self._box is None:
            self._box = st.empty()
        self._box.info(hosting.waiting_message(place), icon=":material/hourglass_top:")
        self._place = place

    def clear(self) -> None:
        if self._box is not None:
            self._box.empty()


class SessionPage(backend.Page):
    """This browser session, as the backend's calls see it: one place in the server's queues, and the elements
    that show a call's wait and progress (made while the call runs, so a cached result replays them cleared)."""

    def __init__(self) -> None:
        self.owner = st.session_state.setdefault(OWNER, uuid.uuid4().hex)
        self.did_wait = False

    def queue_notice(self) -> backend.Notice:
        return _QueueNotice()

    def waited(self) -> None:
        self.did_wait = True

    @contextlib.contextmanager
    def progress(self, text: str):
        bar = st.progress(0.0, text=text)
        shown = [0.0]  # when the bar last moved (time.monotonic())

        def report(fraction: float, detail: str = "") -> None:
            # A measurement reports every 25 tokens, dozens of times a second: each move is a message to the browser
            # and a redraw there, taken from the cores the measurement is timed on. Five a second read as smooth.
            now = time.monotonic()
            if now - shown[0] >= PROGRESS_EVERY or fraction >= 1.0:
                shown[0] = now
                bar.progress(min(1.0, max(0.0, fraction)), text=f"{text} {detail}".strip())

        try:
            yield report
        finally:
            bar.empty()

    @contextlib.contextmanager
    def spinner(self, text: str):
        with st.spinner(text):
            yield


def _identity(value):
    """What a request's value is compared by: a model, corpus or vocabulary by its key, never by its tensors."""
    if isinstance(value, (ModelSource, Variant, CorpusSource, Vocabulary)):
        return type(value).__name__, value.key
    return value


def ask(call, *args, **kwargs):
    """``call(*args, **kwargs)`` of the backend for this session's page, with a lasting word under its result
    when it had to wait for another visitor's work (shown again on every rerun that shows the result)."""
    page = SessionPage()
    result = call(*args, **kwargs, _page=page)
    asked = (call.__name__, *map(_identity, args), *((k, _identity(v)) for k, v in sorted(kwargs.items())))
    waited = st.session_state.setdefault(WAITED, set())
    if page.did_wait:
        waited.add(asked)
    if asked in waited:
        st.caption(":material/hourglass_bottom: This measurement waited for another visitor's to finish first, "
                   "so that neither slowed the other.")
    return result


def listed(names) -> str:
    """Names in words: 'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def shown_to_another(measured: backend.Measured) -> bool:
    """Whether a shared measurement was made for another session's request."""
    return measured.by != SessionPage().owner


def shared_caption(measured: backend.Measured, asked_for: str, again: str, done: str = "Measured",
                   redo: str = "Measure again", saved: str = "so this page did not queue for it") -> None:
    """Under a measurement (or a text) another visitor's request made for the same ``asked_for``: when, and a button
    for this session's own, which counts its presses in session state ``again`` (the count is part of the request)
    and marks ``{again}_pressed`` for a page that acts on the press itself."""
    if not shown_to_another(measured):
        return
    seconds = measured.seconds_ago()
    ago = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(f":material/group: {done} {ago} ago on this server for another visitor who asked for the same "
                 f"{asked_for}, {saved}.")
    right.button(redo, key=f"{again}_go", on_click=lambda: st.session_state.update(
        {again: st.session_state.get(again, 0) + 1, f"{again}_pressed": True}))


def remembered_button(label: str, key: str, request: tuple) -> bool:
    """True when the button was just pressed, or was pressed earlier for this same request (the values of
    ``ui.requests`` in it are compared by identity).

    The press is remembered by the button's callback as well, for the request the page showed: a visitor who
    opens another tab at once starts a run of that tab, not of this one, and only the callback runs before it."""
    request, remembered = tuple(map(_identity, request)), f"{key}_request"
    if st.button(label, key=key, on_click=_remember, args=(remembered, request)):
        st.session_state[remembered] = request  # as the page has it now, should it have changed since it was drawn
    return st.session_state.get(remembered) == request


def _remember(key: str, request: tuple) -> None:
    st.session_state[key] = request


def token_slider(label: str, total: int, default: int, key: str, help: str | None = None) -> int:
    """A slider over a prefix of the test split, in steps of 100 tokens (of 1 for a tiny split)."""
    step = 100 if total >= 1000 else 1
    low = min(step, total - 1) if step > 1 else 2
    value = int(st.slider(label, low, total, max(low, min(default, total)), step, key=key, persist_state="page",
                          help=help))
    # The range bounds the widget, not what a script may send as its value: the server bounds it again.
    return min(max(value, low), total)


def split_slider(setup: Setup, label: str, default: int, key: str, *, longest: int, limit: int,
                 shared: str | None = None, help: str | None = None) -> int:
    """A ``token_slider`` over the first ``longest`` test tokens, which a shared server bounds to ``limit`` (and
    says so, ``shared``, under the slider)."""
    total = hosting.token_bound(min(len(setup.test_ids), longest), setup.hosted, limit)
    tokens = token_slider(label, total, default, key, help=help)
    if setup.hosted and shared:
        st.caption(shared)
    return tokens


def bound_note(limit: int) -> str:
    return f"This shared server measures at most {limit:,} tokens per request, so no one waits long for a measurement."


def need_corpus(setup: Setup) -> bool:
    """True when the test split is there; otherwise says what is missing and returns False."""
    if setup.test_ids is None:
        st.info(setup.missing)
        return False
    return True


def error(exc: Exception | str, setup: Setup) -> None:
    """One error line; on a shared server it names no server path (``hosting.public_message``)."""
    st.error(hosting.public_message(str(exc), setup.hosted))


def bounded_text(setup: Setup, text: str, max_words: int, max_chars: int, box=st) -> str:
    """``text`` as the server works on it. On a shared server that is its first ``max_words`` words within
    ``max_chars`` characters, with a note in ``box`` (under the text's box) when some were cut: the bound holds
    for the value the server received, since a link or a script sends any length whatever the box allows. On
    a laptop it is all of ``text``: models read in chunks, so a long text costs time, not memory."""
    if not setup.hosted:
        return text
    bounded = hosting.bound_text(text, max_words, max_chars)
    if bounded.note:
        box.info(bounded.note)
    return bounded.text
