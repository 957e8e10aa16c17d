"""Small building blocks every tab uses: a chart with its takeaway, buttons that remember, token sliders."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from wlm import charts, hosting

if TYPE_CHECKING:
    from .setup import Setup


def show(figure: charts.Figure) -> None:
    st.altair_chart(figure.chart, width="stretch")
    st.caption(f"**Takeaway:** {figure.takeaway}")


def progress_bar(text: str):
    """A progress bar and a ``progress(done, total)`` callback that fills it with token counts."""
    bar = st.progress(0.0, text=text)
    return bar, (lambda done, total: bar.progress(min(1.0, done / total), text=f"{text} {done:,}/{total:,} tokens"))


def remembered_button(label: str, key: str, request) -> bool:
    """True when the button was just pressed, or was pressed earlier for this same request."""
    if st.button(label, key=key):
        st.session_state[f"{key}_request"] = request
    return st.session_state.get(f"{key}_request") == request


def token_slider(label: str, total: int, default: int, key: str, help: str | None = None) -> int:
    """A slider over a prefix of the test split, in steps of 100 tokens (of 1 for a tiny split)."""
    step = 100 if total >= 1000 else 1
    low = min(step, total - 1) if step > 1 else 2
    value = int(st.slider(label, low, total, max(low, min(default, total)), step, key=key, help=help))
    # The range bounds the widget, not what a script may send as its value: the server bounds it again.
    return min(max(value, low), total)


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
