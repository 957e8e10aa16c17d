"""The Model tab: what quantizing does to each part's size, the architectures, and the quantized model's download."""
from __future__ import annotations

import weakref
from typing import Callable

import streamlit as st
from torch import nn

from wlm.errors import WlmError
from wlm.quantize import QuantSpec, quantize
from wlm.quantized_file import load_note, quantized_bytes
from wlm.sizes import format_mb, part_table

from . import onnx_download
from .backend import download_size, part_sizes, weights_of
from .charts import model as charts
from .requests import Setup, Variant
from .widgets import SessionPage, show


def render(setup: Setup) -> None:
    spec, model, quantized = setup.spec, setup.model, setup.quantized
    st.caption(f"Source: {setup.loaded.source} · quantization: **{spec.label}**")
    sizes = part_sizes(setup.variant, _page=SessionPage())
    table = part_table(sizes, weights_of(setup.source), spec)
    total = table.loc["total"]
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{total['weights']:,}", help="The same in both models: quantizing changes how "
                   "weights are stored, not how many there are.")
    cols[1].metric("Float size", format_mb(total["float_mb"]))
    cols[2].metric("Quantized size", format_mb(total["quantized_mb"]),
                   delta=f"{100 * (total['quantized_mb'] / total['float_mb'] - 1):+.0f} %", delta_color="inverse")
    cols[3].metric("Ratio", f"{total['float_mb'] / total['quantized_mb']:.2f}×")
    show(charts.size_chart(sizes))
    # A static table: nothing to scroll on a projector, and the first page does not wait for the
    # interactive data grid's scripts. The architectures are plain text, as print(model) shows them.
    shown = table.rename(columns={"float_mb": "float", "quantized_mb": "quantized",
                                  "quantized_storage": "quantized model stores"})
    st.table(shown.style.format({"weights": "{:,}", "float": format_mb, "quantized": format_mb}))
    left, right = st.columns(2)
    with left.expander("Float architecture"):
        st.text(str(model))
    with right.expander("Quantized architecture"):
        st.text(str(quantized))
    file_name = f"wlm-{spec.label.replace(' ', '-').replace('+', '_')}.pt"
    size = download_size(setup.variant, _page=SessionPage())
    # Sent as application/zip, which it is (torch.save writes a zip archive): Streamlit's server gzips an
    # octet-stream download on every request, and gzipping the bundled model's 80 MB kept the browser waiting
    # 10 to 20 s after the press on two busy cores; a zip goes out as it is, in about a second.
    st.download_button("Download the quantized model", data=download_bytes(quantized, model, spec),
                       file_name=file_name, mime="application/zip", on_click="ignore",
                       icon=":material/download:", help="torch.save of its state_dict (LSTM weights as plain tensors)")
    st.caption(download_note(file_name, size))
    with st.popover("Load it back in Python"):
        st.caption("No code runs: the file is read with torch.load(weights_only=True).")
        st.code(load_note(model.config, spec, file_name), language="python", wrap_lines=True)
    onnx_download.render(setup)


def prepare(variant: Variant) -> None:
    """What ``render`` computes of a variant, computed now: the server's start does it for the default page."""
    part_sizes(variant)
    weights_of(variant.source)
    download_size(variant)


def download_note(file_name: str, size: int) -> str:
    """What pressing the button brings: the file's size, and that the browser starts saving it at once."""
    return (f":material/info: {file_name}: {format_mb(size / 1e6)}, made when you press the button and sent as it "
            "is, so your browser starts saving it within a moment.")


def download_bytes(quantized: nn.Module, model: nn.Module, spec: QuantSpec) -> Callable[[], bytes]:
    """The download button's callable: the file of the quantized model, made when clicked.

    Streamlit keeps the callable as long as the session shows the button, so it holds the models only weakly:
    an upload the server's cache lets go of (a newer upload took its place) leaves memory although the page
    still offers its download. The variant may have gone while the float model stays; it is quantized again."""
    quantized_ref, model_ref = weakref.ref(quantized), weakref.ref(model)

    def make() -> bytes:
        variant = quantized_ref()
        if variant is None:
            float_model = model_ref()
            if float_model is None:
                raise WlmError("this model is no longer loaded on the server (newer models took its place); "
                               "reload the page, upload it again if it was yours, and download it once more")
            variant = quantize(float_model, spec)
        return quantized_bytes(variant)

    return make
