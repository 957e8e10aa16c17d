"""The app's two take-home downloads, driven headless with AppTest on the tiny bundle: the Walkthrough's notebook
and script on every card, and the Model tab's zip for ONNX Runtime, exported once per model and variant under the
server's heavy-work slots, then shared (a second press, by any session, does not export again)."""
import pytest

import ui.onnx_download as onnx_download
from ui import backend
from wlm.lessons import LESSONS
from wlm.notebook import ZIP_FILE

from apptest import assert_clean, run_app


def _downloads(at, word: str) -> list:
    return [b for b in at.get("download_button") if word in b.proto.label]


@pytest.mark.parametrize("step", [1, len(LESSONS)])
def test_every_walkthrough_card_offers_the_notebook(app_env, step):
    at = run_app({"step": str(step)})
    assert_clean(at)
    (button,) = _downloads(at, "notebook")
    assert ZIP_FILE in button.proto.label and "assets/" in button.proto.help


@pytest.fixture
def counted_exports(monkeypatch):
    """Each real export the Model tab asks for, by variant; the shared zips start empty."""
    calls = []
    real = backend.export_zip

    def export_zip(model, dictionary, variant):
        calls.append(variant)
        return real(model, dictionary, variant)

    monkeypatch.setattr(backend, "export_zip", export_zip)
    backend.onnx_zip.clear()
    yield calls
    backend.onnx_zip.clear()


@pytest.mark.parametrize("hosted", [False, True])
def test_the_model_tab_prepares_the_onnx_zip_once(app_env, counted_exports, monkeypatch, hosted):
    if hosted:
        monkeypatch.setenv("WLM_HOSTED", "1")
    at = run_app()
    assert_clean(at)
    assert at.radio(key="onnx_variant").value == "int8" and not _downloads(at, "ONNX")
    at.button(key="onnx_export").click().run()
    assert_clean(at)
    (button,) = _downloads(at, "ONNX")
    assert button.proto.label.endswith("Download for ONNX Runtime (int8)")
    assert any("MB zip: model.int8.onnx" in c.value for c in at.caption)
    at.run()  # a rerun keeps the prepared download (the press is remembered)
    assert len(_downloads(at, "ONNX")) == 1
    other = run_app()  # another session
    other.button(key="onnx_export").click().run()
    assert_clean(other)
    assert len(_downloads(other, "ONNX")) == 1 and counted_exports == ["int8"]
    other.radio(key="onnx_variant").set_value("fp32").run()
    assert not _downloads(other, "ONNX")  # a new variant is a new request: press again
    other.button(key="onnx_export").click().run()
    assert _downloads(other, "ONNX")[0].proto.label.endswith("(fp32)") and counted_exports == ["int8", "fp32"]


def test_a_download_the_server_let_go_of_says_so():
    prepared = backend.PreparedZip(b"zip")
    data = onnx_download.download_data(prepared)
    assert data() == b"zip"
    del prepared
    with pytest.raises(Exception, match="press Prepare again"):
        data()
