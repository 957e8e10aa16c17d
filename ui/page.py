"""The page under its title: the sidebar, then the open tab (each tab is a module of ``ui``)."""
from __future__ import annotations

import logging

import streamlit as st

import wlm  # noqa: F401  (quantization warning filters)
from ui import (
    bits_tab,
    fidelity_tab,
    generate_tab,
    model_tab,
    multiply_tab,
    sensitivity_tab,
    speed_tab,
    speedup_tab,
    static_tab,
    walkthrough_tab,
)
from ui.backend import quantized_variant, use_one_thread
from ui.setup import (
    DEFAULTS,
    Setup,
    bundled_source,
    corpus_panel,
    init_from_query_params,
    link_params,
    open_tabs,
    read_corpus_ahead,
    resolve_setup,
    sidebar,
    with_corpus,
)
from ui.widgets import load_front_end_ahead, style_page
from wlm import hosting
from wlm.errors import WlmError
from wlm.quantize import PRESETS

TABS = {"Model": model_tab, "Generate": generate_tab, "Speed & accuracy": speed_tab, "Fidelity": fidelity_tab,
        "Inside a multiply": multiply_tab, "Fewer bits": bits_tab, "Walkthrough": walkthrough_tab,
        "Static or dynamic": static_tab, "When int8 pays": speedup_tab, "Which parts": sensitivity_tab}
log = logging.getLogger("wlm.app")


def draw(tab, module, setup: Setup) -> None:
    """One tab, contained: whatever goes wrong in it is one line in it, and the other tabs still draw."""
    with tab:
        try:
            module.render(setup)
        except WlmError as exc:
            st.error(hosting.public_message(str(exc), setup.hosted))
        except Exception as exc:  # a defect, not the visitor's doing: say so in one line, keep the rest going
            log.exception("the %s tab failed", module.__name__)  # the whole story is in the server's log
            st.error(hosting.public_message(unexpected(exc), setup.hosted))


def unexpected(exc: Exception) -> str:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    detail = f": {first[:200]}" if first else ""
    return (f"This part of the page hit an unexpected error ({type(exc).__name__}{detail}). The other tabs still "
            "work; reload the page to try again.")


def prepare_first_page() -> None:
    """The default page's work, done before the server listens (``streamlit_app.warm_up``): the corpus split into
    tokens, and the Model tab's sizes of the bundled model quantized the sidebar's default way.

    That work is Python holding the interpreter, and in the first visitor's run it shared it with the server
    sending the same page its scripts: the page drew nothing until the last of them came (on 2 cores of an AMD
    EPYC the first chart came 3.7 to 4.4 s after the page opened, with most of the scripts a second in flight).
    What cannot be read here is left for the page to report."""
    read_corpus_ahead()
    try:
        source = bundled_source()
        if source is not None:
            model_tab.prepare(quantized_variant(source, PRESETS[DEFAULTS["preset"]]))
    except WlmError:
        pass


def main(starting) -> None:
    """The page under its title; ``starting`` is the placeholder of the start-up note, emptied once the sidebar
    has a model."""
    try:
        mode = hosting.serving_mode(st.get_option("server.address"))
    except WlmError as exc:
        st.error(str(exc))
        st.stop()
    hosted = mode.hosted
    if hosted:
        st.set_option("client.showErrorDetails", "none")  # visitors never see a traceback
    if mode.note:
        st.sidebar.info(mode.note)
    use_one_thread()
    style_page()
    init_from_query_params(hosted)
    config, spec = sidebar(hosted)
    try:
        setup = resolve_setup(config, spec)
    except Exception as exc:  # reading or quantizing the model failed in a way no check foresaw
        log.exception("setting up the model failed")
        st.error(hosting.public_message(unexpected(exc), hosted))
        setup = None
    starting.empty()
    if setup is None:
        corpus_panel(hosted)  # the sidebar still says where the corpus is, or how to get it
        return
    tabs = open_tabs(list(TABS))
    (open_title,) = [title for title, tab in tabs.items() if tab.open]
    link_params(config, open_title)
    if open_title == "Model":
        draw(tabs["Model"], model_tab, setup)  # it needs no corpus, so it is drawn before one is read
    setup = with_corpus(setup)  # the sidebar says where the corpus is, whichever tab is open
    if open_title != "Model":
        draw(tabs[open_title], TABS[open_title], setup)
    load_front_end_ahead()
