"""The Model tab: the size table follows the sidebar, and the download note loads the model back."""
import pytest
import torch

from wlm.quantize import PRESETS, quantize
from wlm.quantized_file import quantized_bytes
from wlm.sizes import format_mb

from apptest import assert_clean, run_app, size_table


def test_changing_the_spec_changes_the_size_table_and_the_link(app_env):
    at = run_app()
    before = size_table(at)
    (ratio,) = [m.value for m in at.tabs[0].metric if m.label == "Ratio"]
    assert ratio.endswith("×") and float(ratio[:-1]) > 1  # read as "1.43×", the way the other tabs write it
    at.sidebar.toggle(key="embedding").set_value(True).run()
    assert_clean(at)
    after = size_table(at)
    assert after.loc["embedding", "quantized"] < before.loc["embedding", "quantized"]
    assert after.loc["lstm", "quantized"] == pytest.approx(before.loc["lstm", "quantized"])
    assert (before.loc["embedding", "quantized model stores"], after.loc["embedding", "quantized model stores"]) == (
        "float32", "8-bit, scale and offset per row")
    assert after["weights"].tolist() == before["weights"].tolist()  # stored differently, never fewer
    assert at.sidebar.selectbox(key="preset").value == "int8+emb8"  # the toggles now match a preset
    assert at.query_params["emb"] in ("true", ["true"])
    at.sidebar.selectbox(key="preset").set_value("fp32").run()
    assert_clean(at)
    table = size_table(at)
    assert (table["quantized"] == table["float"]).all()
    assert not at.sidebar.toggle(key="lstm").value
    at.sidebar.toggle(key="linear").set_value(True).run()
    assert at.sidebar.selectbox(key="preset").value == "custom"


def blocks(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from blocks(child)


def test_the_download_note_loads_the_quantized_model_back(app_env, tmp_path):
    at = run_app({"preset": "int8+emb4"})
    assert_clean(at)
    button = at.get("download_button")[0]
    assert button.proto.label == "Download the quantized model"
    note = next(c.value for c in at.code if "load_quantized" in c.value)
    # The code is drawn when its popover opens: the first page does not wait for the code highlighter's script
    # (0.3 s of the browser's main thread on 2 cores of an AMD EPYC) before its first chart.
    (popover,) = [block for block in blocks(at.tabs[0]) if block.type == "popover"]
    assert [c.value for c in at.tabs[0].code] == [c.value for c in popover.code] == [note]
    model = app_env["model"]
    quant = quantize(model, PRESETS["int8+emb4"])
    file_name = next(part for part in note.split("'") if part.endswith(".pt"))
    (tmp_path / file_name).write_bytes(quantized_bytes(quant))
    scope: dict = {}
    exec(note.replace(repr(file_name), repr(str(tmp_path / file_name))), scope)
    x = torch.arange(10).view(-1, 1)
    assert torch.equal(scope["model"](x, model.init_hidden(1))[0], quant(x, model.init_hidden(1))[0])


def test_the_download_says_its_size_and_goes_out_as_a_zip(app_env, monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager

    from ui import backend

    made, registered = [], []
    real, register = backend.quantized_bytes, MediaFileManager.add_deferred
    monkeypatch.setattr(backend, "quantized_bytes", lambda model: made.append(1) or real(model))

    def add_deferred(self, data, mimetype, *args, file_name=None, **kwargs):
        registered.append((file_name, mimetype, data))
        return register(self, data, mimetype, *args, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    backend.download_size.clear()
    at = run_app({"preset": "int8+emb4"})
    assert_clean(at)
    data = quantized_bytes(quantize(app_env["model"], PRESETS["int8+emb4"]))
    (note,) = [c.value for c in at.caption if "wlm-int8_emb4.pt:" in c.value]
    assert note.startswith(f":material/info: wlm-int8_emb4.pt: {format_mb(len(data) / 1e6)}, made when you press")
    assert at.get("download_button")[0].proto.icon == ":material/download:"
    # Served as what it is, a zip archive (torch.save's format): Streamlit's server gzips an octet-stream download
    # on every request, which kept the browser waiting 10 s and more for the bundled model's 80 MB.
    ((file_name, mimetype, download),) = [r for r in registered if r[0] == "wlm-int8_emb4.pt"]
    assert mimetype == "application/zip" and data[:4] == b"PK\x03\x04" and download() == data
    at.run()
    assert made == [1]  # counted once per variant, then let go: the button makes the file again when pressed
    # Every code block of the tab wraps its lines: nothing to scroll sideways on a phone.
    assert all(c.proto.wrap_lines for c in at.tabs[0].code)
