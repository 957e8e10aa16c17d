"""The Model tab's second download: the model as a zip that any ONNX Runtime runs, without wlm or torch (the
``.onnx`` file, its vocabulary, and a README with the numpy lines that print the next-word probabilities)."""
from __future__ import annotations

import weakref
from typing import Callable

import streamlit as st

from wlm.errors import WlmError
from wlm.onnx_export import README_FILE, VOCAB_FILE, model_file, zip_folder

from . import backend
from .requests import Setup
from .widgets import SessionPage, error, remembered_button

VARIANTS = ("int8", "fp32")  # int8 first: the quantized model is the point of the tab


def download_data(prepared: backend.PreparedZip) -> Callable[[], bytes]:
    """The download button's callable. Streamlit keeps it while the session shows the button, so it holds the zip
    weakly: once the server's cache lets the zip go (two newer exports took its place), so does the page."""
    ref = weakref.ref(prepared)

    def data() -> bytes:
        still = ref()
        if still is None:
            raise WlmError("this download is no longer prepared on the server (newer exports took its place); "
                           "press Prepare again")
        return still.data

    return data


def render(setup: Setup) -> None:
    st.markdown("**For ONNX Runtime**: the model as a file any ONNX Runtime runs, in any language, without wlm or "
                "torch (ONNX Runtime quantizes its own int8 model, the embedding included: smaller than "
                "PyTorch's).")
    if setup.dictionary is None:
        st.info("The ONNX download needs the model's vocabulary. " + setup.missing)
        return
    variant = st.radio("ONNX variant", VARIANTS, horizontal=True, key="onnx_variant", persist_state="page",
                       format_func=lambda v: {"int8": "int8 (quantize_dynamic)", "fp32": "fp32 (float)"}[v])
    if not remembered_button(f"Prepare the download for ONNX Runtime ({variant})", "onnx_export",
                             (setup.source, variant)):
        st.caption("The first press exports the model and has ONNX Runtime quantize it, once per model on this server "
                   "(a spinner shows while it works); after that the download is ready at once, for every visitor.")
        return
    try:
        prepared = backend.onnx_zip(setup.source, setup.vocabulary, variant, _page=SessionPage())
    except WlmError as exc:  # e.g. a model the exporter cannot handle: one line, never a traceback
        error(exc, setup)
        return
    name, size = zip_folder(variant), len(prepared.data)
    st.download_button(f":material/download: Download for ONNX Runtime ({variant})", data=download_data(prepared),
                       file_name=f"{name}.zip", mime="application/zip", on_click="ignore", key="onnx_download",
                       type="primary")
    st.caption(f"{size / 1e6:,.1f} MB zip: {model_file(variant)} (inputs `input`, `h0`, `c0`; outputs "
               f"`logits`, `hn`, `cn`), {VOCAB_FILE} (one word a line, in id order) and {README_FILE} with the "
               "lines of numpy and onnxruntime that read a sentence and print the next-word probabilities.")
