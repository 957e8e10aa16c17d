"""The app on a shared server (WLM_HOSTED=1), driven headless with AppTest on the tiny bundled model: no path
source, one thread, bounded token requests, a page that says why it waits; and a laptop left as it was."""
import builtins
import io
import os
import threading
import time

import pytest
import streamlit as st
import torch
from streamlit.elements.alert import AlertMixin

from wlm import hosting

from apptest import assert_clean, charts_of, open_tab, run_app

SECRET = "/etc/passwd"
NEXT = hosting.waiting_message(1)  # what a page first in the queue says


@pytest.fixture
def opened(monkeypatch):
    """Every path the process stats or opens, while the test runs (Path.is_file, exists and open end here)."""
    seen = []
    for module, name in [(os, "stat"), (os, "lstat"), (os, "open"), (os, "access"), (builtins, "open"),
                         (io, "open")]:
        original = getattr(module, name)

        def spy(path, *args, _original=original, **kwargs):
            seen.append(os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else path)
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return seen


def test_hosted_offers_uploads_only_one_thread_and_hides_error_details(hosted):
    at = run_app({"threads": "2"})
    assert_clean(at)
    assert at.sidebar.radio(key="source").options == ["Bundled model", "Upload a checkpoint"]
    assert not at.sidebar.slider and at.session_state["threads"] == 1
    assert "threads" not in at.query_params  # the Model tab reads no thread count, so its link names none
    for title in ("Speed & accuracy", "Fidelity"):  # the tabs that read it: their link says one thread
        open_tab(at, title)
        assert_clean(at)
        assert at.query_params["threads"] in ("1", ["1"]), title
    assert any(c.value.startswith("Threads: 1. This server is shared") for c in at.sidebar.caption)
    assert st.get_option("client.showErrorDetails") == "none"


def test_a_laptop_keeps_the_path_source_and_the_threads_slider(app_env, monkeypatch):
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    shown = st.get_option("client.showErrorDetails")
    at = run_app()
    assert_clean(at)
    assert at.sidebar.radio(key="source").options == ["Bundled model", "A .pth file by path", "Upload a checkpoint"]
    assert st.get_option("client.showErrorDetails") == shown
    if (os.cpu_count() or 1) > 1:
        assert at.sidebar.slider(key="threads").max == os.cpu_count()


def test_a_path_link_opens_the_bundled_model_and_never_touches_the_path(hosted, opened):
    at = run_app({"src": "path", "pth": SECRET})
    assert opened and not [p for p in opened if isinstance(p, str) and SECRET in p]
    assert_clean(at)
    assert at.sidebar.radio(key="source").value == "bundled"
    assert any(i.value == hosting.PATH_NOTE for i in at.info)
    assert len(charts_of(at)) >= 1  # the bundled model's sections are all there: the Model tab's size per part,
    assert "pth" not in at.query_params and at.query_params["src"] in ("bundled", ["bundled"])
    open_tab(at, "Fidelity")
    assert_clean(at)
    assert len(charts_of(at)) >= 1  # and the Fidelity tab's next word
    assert "pth" not in at.query_params and at.query_params["src"] in ("bundled", ["bundled"])
    at.sidebar.radio(key="source").set_value("upload").run()
    assert not any(i.value == hosting.PATH_NOTE for i in at.info)  # the note goes once another source is chosen


def test_on_a_laptop_a_path_link_opens_that_path(app_env, monkeypatch, tmp_path, opened):
    # The same spy sees the path being read when the path source is allowed: the hosted test above can fail.
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    path = tmp_path / "model.pth"
    buffer = io.BytesIO()
    torch.save(app_env["model"].state_dict(), buffer)
    path.write_bytes(buffer.getvalue())
    at = run_app({"src": "path", "pth": str(path)})
    assert_clean(at)
    assert at.sidebar.text_input(key="path").value == str(path)
    assert str(path) in opened


def test_a_file_that_is_no_checkpoint_is_one_error_line(hosted):
    at = run_app()
    at.sidebar.radio(key="source").set_value("upload").run()
    notes = b"my lecture notes, not a model\n" * 20
    at.sidebar.get("file_uploader")[0].set_value(("notes.pth", notes, "application/octet-stream")).run()
    assert not at.exception
    assert len(at.error) == 1 and "notes.pth" in at.error[0].value and "\n" not in at.error[0].value.strip()


def test_a_bad_hosted_value_is_an_error_not_a_laptop(app_env, monkeypatch):
    monkeypatch.setenv("WLM_HOSTED", "maybe")
    at = run_app()
    assert not at.exception and not at.tabs and not at.sidebar.radio
    assert len(at.error) == 1 and "WLM_HOSTED='maybe'" in at.error[0].value


def test_token_requests_are_bounded_on_a_shared_server(hosted, monkeypatch):
    # The tiny corpus has fewer test tokens than the real bound; smaller bounds show the same rule.
    monkeypatch.setattr(hosting, "MAX_TOKENS", 40)
    monkeypatch.setattr(hosting, "MAX_SWEEP_TOKENS", 7)
    total = len(hosted["corpus"].test)
    assert total > 40
    at = run_app({"tab": "speed-accuracy"})
    assert_clean(at)
    assert at.slider(key="speed_tokens").max == 40
    notes = [c.value for c in at.caption if "at most 40 tokens per request" in c.value]
    assert len(notes) == 1 and "so no one waits long" in notes[0]
    assert any("on 7 tokens" in c.value for c in at.caption)  # the thread sweep
    open_tab(at, "Fidelity")
    assert_clean(at)
    assert at.slider(key="fid_tokens").max == 40
    assert len([c.value for c in at.caption if "at most 40 tokens per request" in c.value]) == 1
    assert any(c.value.startswith("Every preset on 40 test tokens") for c in at.caption)  # the trade-off


def test_a_laptop_measures_the_whole_test_split(app_env, monkeypatch):
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    at = run_app({"tab": "speed-accuracy"})
    assert at.slider(key="speed_tokens").max == len(app_env["corpus"].test)
    assert not any("tokens per request" in c.value for c in at.caption)
    open_tab(at, "Fidelity")
    assert not any("tokens per request" in c.value for c in at.caption)


def test_a_measurement_behind_another_sessions_says_why_it_waits(hosted, monkeypatch):
    from ui import backend

    infos, told = [], threading.Event()
    original = AlertMixin.info

    def info(dg, body, *args, **kwargs):
        infos.append(body)
        if body == NEXT:
            told.set()
        return original(dg, body, *args, **kwargs)

    monkeypatch.setattr(AlertMixin, "info", info)
    backend.variant_row.clear()
    at = run_app({"tab": "speed-accuracy"})
    assert_clean(at)
    assert NEXT not in infos  # nobody else measured: no word of waiting

    holding = threading.Event()

    def other_visitor():  # another session's measurement, ending a second after this page says it waits
        with hosting.SERVER_LOCK.hold():
            holding.set()
            told.wait(60)
            time.sleep(1.0)

    visitor = threading.Thread(target=other_visitor)
    visitor.start()
    assert holding.wait(10)
    at.button(key="speed_go").click().run()
    visitor.join(10)
    assert_clean(at)
    # Shown while it waited, its place refreshed about twice a second, and cleared once its turn came.
    assert 1 <= infos.count(NEXT) <= 6 and set(infos) & {hosting.waiting_message(2)} == set()
    assert not any(i.value == NEXT for i in at.info)
    assert list(at.tabs[2].dataframe[0].value["variant"]) == ["fp32", "tutorial"]
    waited = [c.value for c in at.tabs[2].caption if "waited for another visitor's" in c.value]
    assert len(waited) == 1
    at.run()  # the caption stays with the result
    assert any("waited for another visitor's" in c.value for c in at.tabs[2].caption)

    # A second session gets the same result from the cache: it never waits, and says nothing of waiting.
    again = run_app({"tab": "speed-accuracy"})
    again.button(key="speed_go").click().run()
    assert_clean(again)
    assert list(again.tabs[2].dataframe[0].value["variant"]) == ["fp32", "tutorial"]
    assert not any("waited for another visitor's" in c.value for c in again.caption)
    assert 1 <= infos.count(NEXT) <= 6 and not hosting.SERVER_LOCK.busy
    assert hosting.SERVER_LOCK.waiting == 0
