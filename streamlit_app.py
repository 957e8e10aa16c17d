"""Dynamic quantization of an LSTM language model, interactively.

Run with ``streamlit run streamlit_app.py``. This file lays out the sidebar and the tabs; each tab is
a module in ``ui/``, the measurements come from ``wlm`` and the charts from ``wlm.charts``.
"""
from __future__ import annotations

import sys

import streamlit as st

# A fresh server's first run spends about 1.5 s importing torch, pandas and Altair; the page's
# frame goes out first, so a class looks at a title and a note rather than a blank tab.
st.set_page_config(page_title="Quantizing an LSTM language model", page_icon="🧮", layout="wide")
st.title("Dynamic quantization of an LSTM language model")
starting = st.empty()
if "torch" not in sys.modules:
    starting.caption("Starting up: loading PyTorch and the model…")

import wlm  # noqa: F401  (quantization warning filters)
from ui import bits_tab, fidelity_tab, generate_tab, model_tab, multiply_tab, speed_tab, walkthrough_tab
from ui.cached import use_one_thread
from ui.setup import (
    Setup,
    corpus_panel,
    init_from_query_params,
    opening_tab,
    resolve_setup,
    sidebar,
    with_corpus,
)
from wlm import hosting
from wlm.errors import WlmError

TABS = {"Model": model_tab, "Generate": generate_tab, "Speed & accuracy": speed_tab, "Fidelity": fidelity_tab,
        "Inside a multiply": multiply_tab, "Fewer bits": bits_tab, "Walkthrough": walkthrough_tab}


def draw(tab, module, setup: Setup) -> None:
    with tab:
        try:
            module.render(setup)
        except WlmError as exc:
            st.error(str(exc))


def main() -> None:
    try:
        hosted = hosting.hosted_mode()
    except WlmError as exc:
        st.error(str(exc))
        st.stop()
    if hosted:
        st.set_option("client.showErrorDetails", "none")  # visitors never see a traceback
    use_one_thread()
    init_from_query_params(hosted)
    config, spec = sidebar(hosted)
    setup = resolve_setup(config, spec)
    starting.empty()
    if setup is None:
        corpus_panel()  # the sidebar still says where the corpus is, or how to get it
        return
    tabs = dict(zip(TABS, st.tabs(list(TABS), default=opening_tab(list(TABS)))))
    draw(tabs["Model"], model_tab, setup)
    setup = with_corpus(setup)  # the Model tab needs no corpus, so it is drawn before one is read
    for title, module in list(TABS.items())[1:]:
        draw(tabs[title], module, setup)


if __name__ == "__main__":
    main()
