"""Dynamic quantization of an LSTM language model, interactively.

Run with ``streamlit run streamlit_app.py``. This file is the app's entry: the title, then the page of
``ui/page.py`` (the sidebar and the tabs; only the open tab runs). The measurements come from ``wlm``.

Streamlit runs this file as ``__main__`` for each visitor. ``streamlit run`` also imports it once as a module,
to find the st.App at the end: that is when the server starts (before it listens) and where it warms up.
"""
from __future__ import annotations

import gc
import sys
from contextlib import asynccontextmanager

import streamlit as st


def read_bundle_ahead():
    """Read the bundled model and quantize it the sidebar's default way in a background thread; the first
    load of it takes that read (wlm.bundle.read_ahead). This is mostly torch's own work, so it runs on the
    other core while pandas, Altair and the tabs are imported. Returns the event set when it is over (None
    when the bundle is missing: the sidebar then says so)."""
    from wlm.bundle import read_ahead
    from wlm.checkpoint import default_model_path
    from wlm.quantize import PRESETS

    return read_ahead(default_model_path(), PRESETS["tutorial"])


@asynccontextmanager
async def warm_up(_app):
    """Before the server listens: what the first visitor's run would otherwise wait for, the imports (about
    1.5 s), the model read and quantized, the corpus split into tokens and the Model tab's sizes. Streamlit's
    runtime is up by now, so the tabs' caches are made as in a visitor's run."""
    read = read_bundle_ahead()
    from ui.page import prepare_first_page

    # A class's forty pages keep dozens of threads waking up to check on shared work while one thread computes
    # it; with Python's default 5 ms switch interval each of them takes the interpreter from the computing thread,
    # and on busy cores every such hand-over waits for the scheduler (the computation ran at a tenth of a core).
    # 50 ms leaves the computation whole slices; a page's reply waits at most that much longer.
    sys.setswitchinterval(0.05)

    prepare_first_page()  # the corpus is split while the other core reads and quantizes the model
    if read is not None:
        read.wait(timeout=120)  # a read that fails or hangs is the first load's to report, not the start's
    # Streamlit collects all of Python's garbage after every run of a page, and a full collection walks every
    # object the process holds: after start-up that is torch, pandas, Altair, the tabs and the model, a quarter of
    # a million objects and 80 ms with the interpreter held: 3.8 s of the 24 s after a class of forty pages pressed,
    # while their shared evaluation ran. What is alive now lives as long as the server: collections leave it out,
    # and still free what the runs leave.
    gc.collect()  # start-up's own garbage first, or it would be kept for good
    gc.freeze()
    yield


if __name__ == "__main__":
    st.set_page_config(page_title="Quantizing an LSTM language model", page_icon="🧮", layout="wide")
    st.title("Dynamic quantization of an LSTM language model")
    starting = st.empty()
    if "torch" not in sys.modules:  # a run not started by `streamlit run` (no warm-up): say why it waits
        starting.caption("Starting up: loading PyTorch and the model…")
        if st.query_params.get("src", "bundled") == "bundled":
            read_bundle_ahead()

    from ui.page import main

    main(starting)
else:
    app = st.App(__file__, lifespan=warm_up)
