"""A shared server no single visitor can take down, driven headless with AppTest on the tiny bundled model: the
queue shows each page its place, heavy work shares a few slots, the thread count always comes back to one, the
shared models survive a clear-cache message, a tab's failure stays in that tab, no message names a server path,
and a laptop server that other machines can reach runs hosted."""
import subprocess
import sys
import threading

import pytest
import streamlit as st
import torch
from streamlit.elements.alert import AlertMixin

from wlm import hosting
from wlm import threads as wlm_threads
from wlm.cache import in_use, prune
from wlm.threads import num_threads, rest_at

from apptest import assert_clean, open_tab, run_app
from conftest import wait_until


@pytest.fixture
def infos(monkeypatch):
    """Every st.info body any page shows while the test runs."""
    seen: list[str] = []
    original = AlertMixin.info

    def info(dg, body, *args, **kwargs):
        seen.append(body)
        return original(dg, body, *args, **kwargs)

    monkeypatch.setattr(AlertMixin, "info", info)
    return seen


def fresh_thread_count() -> int:
    """The thread count a new thread starts with: torch keeps one count per thread, and a new thread (each page
    run of a server is one) starts from the last count any thread set."""
    seen = []
    reader = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    reader.start()
    reader.join()
    return seen[0]


# --- the queues --------------------------------------------------------------------------------------------------

def test_a_page_in_the_queue_is_told_its_place_as_it_moves_up(hosted, infos):
    from ui import backend

    backend.variant_row.clear()
    at = run_app({"tab": "speed-accuracy"})
    assert_clean(at)
    release_first, release_second = threading.Event(), threading.Event()

    def visitor(owner: str, release: threading.Event):
        with hosting.SERVER_LOCK.hold(owner):
            release.wait(60)

    first = threading.Thread(target=visitor, args=("first", release_first))
    first.start()
    assert wait_until(lambda: hosting.SERVER_LOCK.busy)
    second = threading.Thread(target=visitor, args=("second", release_second))
    second.start()
    assert wait_until(lambda: hosting.SERVER_LOCK.waiting == 1)

    def move_the_queue():  # once this page says it is third in line, the two before it finish in turn
        assert wait_until(lambda: hosting.waiting_message(2) in infos, 60)
        release_first.set()
        assert wait_until(lambda: hosting.waiting_message(1) in infos, 60)
        release_second.set()

    mover = threading.Thread(target=move_the_queue)
    mover.start()
    at.button(key="speed_go").click().run()
    for t in (mover, first, second):
        t.join(30)
    assert_clean(at)
    waits = [body for body in infos if body in (hosting.waiting_message(1), hosting.waiting_message(2))]
    assert waits[0] == hosting.waiting_message(2) and waits[-1] == hosting.waiting_message(1)
    assert list(at.tabs[2].dataframe[0].value["variant"]) == ["fp32", "tutorial"]
    assert not hosting.SERVER_LOCK.busy and hosting.SERVER_LOCK.waiting == 0


def _hold_every_slot(queue: hosting.FairQueue, release: threading.Event) -> list[threading.Thread]:
    """Other visitors holding every slot of ``queue`` until ``release``."""
    held = threading.Barrier(queue.slots + 1)

    def visitor(owner: str):
        with queue.hold(owner):
            held.wait(30)
            release.wait(60)

    others = [threading.Thread(target=visitor, args=(f"visitor-{i}",)) for i in range(queue.slots)]
    for t in others:
        t.start()
    held.wait(30)
    return others


def test_work_that_draws_a_page_waits_for_a_free_slot_of_its_own_queue(hosted, infos):
    from ui import backend

    backend.sweep_estimate.clear()
    backend.sweep_points.clear()
    release = threading.Event()
    others = _hold_every_slot(hosting.PAGE_WORK, release)

    def free_a_slot():
        assert wait_until(lambda: hosting.waiting_message(1) in infos, 60)
        release.set()

    freer = threading.Thread(target=free_a_slot)
    freer.start()
    at = run_app({"tab": "fewer-bits"})  # the sweep's estimate draws the tab: the page's first run waits
    freer.join(30)
    for t in others:
        t.join(30)
    assert_clean(at)
    assert hosting.waiting_message(1) in infos
    assert any("estimated from a short probe" in c.value for c in at.caption)
    assert not hosting.PAGE_WORK.busy and hosting.PAGE_WORK.waiting == 0


def test_a_page_never_waits_behind_other_visitors_long_work(hosted, infos):
    from ui import backend

    backend.sweep_estimate.clear()
    release = threading.Event()
    others = _hold_every_slot(hosting.HEAVY_WORK, release)  # two sweeps running for minutes
    try:
        at = run_app({"tab": "fewer-bits"})
        assert_clean(at)
        assert not [body for body in infos if "in the queue" in body or "yours is next" in body]
        assert any("estimated from a short probe" in c.value for c in at.caption)
    finally:
        release.set()
        for t in others:
            t.join(30)
    assert not hosting.HEAVY_WORK.busy


# --- threads -----------------------------------------------------------------------------------------------------

def test_a_block_returns_to_the_resting_count_whatever_it_found(monkeypatch):
    # A page's one-thread block that starts while another session's sweep runs at 2 threads found 2; it must not
    # leave 2 behind for every later session.
    monkeypatch.setattr(wlm_threads, "_resting", None)
    before = torch.get_num_threads()
    try:
        rest_at(1)
        rest_at(3)  # a later page run cannot move the resting count
        assert torch.get_num_threads() == 1 and wlm_threads.resting() == 1
        torch.set_num_threads(2)  # something set the count behind the blocks' back: the next page run mends it
        rest_at(1)
        assert fresh_thread_count() == 1
        sweep_in, page_in, sweep_out = threading.Event(), threading.Event(), threading.Event()

        def sweep():
            with num_threads(2):
                sweep_in.set()
                page_in.wait(10)
            sweep_out.set()

        def page():
            sweep_in.wait(10)
            with num_threads(1):  # finds 2
                page_in.set()
                sweep_out.wait(10)

        runs = [threading.Thread(target=sweep), threading.Thread(target=page)]
        for t in runs:
            t.start()
        for t in runs:
            t.join(10)
        assert fresh_thread_count() == 1  # the page's block found 2 and still came back to 1
    finally:
        torch.set_num_threads(before)


def test_the_app_sets_one_resting_thread(app_env):
    run_app()
    assert wlm_threads.resting() == hosting.THREADS == 1 and fresh_thread_count() == 1


# --- what survives a clear-cache message ---------------------------------------------------------------------------

def test_shared_models_survive_a_clear_cache_message(app_env, monkeypatch):
    from ui import backend

    at = run_app()
    assert_clean(at)
    made = []
    for name in ("load_model", "Corpus", "quantize"):
        original = getattr(backend, name)
        monkeypatch.setattr(backend, name, lambda *a, _original=original, _name=name, **k: (made.append(_name),
                                                                                            _original(*a, **k))[1])
    # What Streamlit does for any browser that sends clear_cache (AppSession._handle_clear_cache_request).
    st.cache_data.clear()
    st.cache_resource.clear()
    again = run_app()
    assert_clean(again)
    assert made == []  # the corpus, the model and its variant came back from the process, not from disk
    again.sidebar.selectbox(key="preset").set_value("float16").run()
    assert made == ["quantize"]  # a new variant is still made when asked for


def test_an_upload_is_not_held_past_streamlits_cache(app_env):
    from ui import backend

    models_before = len(backend._HELD_MODELS._values)
    variants_before = len(backend._HELD_VARIANTS._values)
    at = run_app()
    at.sidebar.radio(key="source").set_value("upload").run()
    import io

    buffer = io.BytesIO()
    torch.save(app_env["model"].state_dict(), buffer)
    at.sidebar.get("file_uploader")[0].set_value(("mine.pth", buffer.getvalue(), "application/octet-stream")).run()
    assert_clean(at)
    held_keys = [str(k) for k in backend._HELD_MODELS._values] + [str(k) for k in backend._HELD_VARIANTS._values]
    assert not any("mine.pth" in k for k in held_keys)
    assert len(backend._HELD_MODELS._values) <= max(models_before, 1)
    assert len(backend._HELD_VARIANTS._values) <= backend._HELD_VARIANTS.size and variants_before >= 0


# --- containment ---------------------------------------------------------------------------------------------------

def test_a_tab_that_fails_is_one_line_in_that_tab_and_the_others_still_draw(hosted, monkeypatch):
    from ui import generate_tab

    def broken(setup):
        raise RuntimeError("index out of range in /srv/wlm/secret/module.py\nsecond line of the story")

    monkeypatch.setattr(generate_tab, "render", broken)
    at = run_app()
    assert not at.exception and not at.tabs[0].error  # the tab before the broken one
    open_tab(at, "Generate")
    assert not at.exception
    errors = [e.value for e in at.tabs[1].error]
    assert len(errors) == 1 and "RuntimeError" in errors[0] and "other tabs still work" in errors[0]
    assert "/srv" not in errors[0] and "second line" not in errors[0]
    # The tabs after the broken one are still drawn, each opened in turn.
    open_tab(at, "Speed & accuracy")
    assert not at.exception and not at.tabs[2].error
    assert at.slider(key="speed_tokens").max > 0
    open_tab(at, "Walkthrough")
    assert not at.exception and not at.tabs[6].error
    assert any(b.key == "walk_next" for b in at.tabs[6].button)


def test_a_model_that_fails_to_quantize_is_one_error(hosted, monkeypatch):
    from ui import setup as ui_setup

    def broken(*args, **kwargs):
        raise ValueError("quantization engine exploded")

    monkeypatch.setattr(ui_setup, "quantized_variant", broken)
    at = run_app()
    assert not at.exception
    assert len(at.error) == 1 and "ValueError" in at.error[0].value and "quantization engine" in at.error[0].value


def test_hosted_messages_name_no_server_path(hosted, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "wikitext-2"
    monkeypatch.setenv("WLM_DATA_DIR", str(missing))
    at = run_app()
    for title in [t.label for t in at.tabs]:  # whichever tab is open
        open_tab(at, title)
        assert not at.exception
        shown = [w.value for w in at.sidebar.warning] + [i.value for i in at.info]
        assert any("WLM_DATA_DIR" in text for text in shown), title
        assert not any(str(tmp_path) in text for text in shown), title
        assert not [b for b in at.sidebar.button if "Download" in b.label]  # a visitor cannot make it download


def test_a_laptop_shows_its_own_paths(app_env, monkeypatch, tmp_path):
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    missing = tmp_path / "nowhere" / "wikitext-2"
    monkeypatch.setenv("WLM_DATA_DIR", str(missing))
    at = run_app()
    assert any(str(missing) in w.value for w in at.sidebar.warning)


def test_a_laptop_server_reachable_from_other_machines_runs_hosted(app_env, monkeypatch):
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    shown = st.get_option("client.showErrorDetails")
    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda key: "0.0.0.0" if key == "server.address" else real(key))
    try:
        at = run_app({"src": "path", "pth": "/etc/passwd"})
        assert not at.exception
        assert at.sidebar.radio(key="source").options == ["Bundled model", "Upload a checkpoint"]
        assert any("listens on 0.0.0.0" in i.value for i in at.sidebar.info)
        assert at.sidebar.radio(key="source").value == "bundled"
    finally:
        st.set_option("client.showErrorDetails", shown)


# --- the walkthrough's timed lesson ------------------------------------------------------------------------------

def _lesson_tables(at) -> str:
    return " ".join(str(t.value) for t in at.tabs[6].table)


def test_the_walkthroughs_timed_lesson_is_bounded_on_a_shared_server(hosted, monkeypatch):
    from ui import walkthrough_tab

    monkeypatch.setattr(hosting, "MAX_TOKENS", 40)
    total = len(hosted["corpus"].test)
    assert total > 40
    at = run_app({"step": "7"})
    assert_clean(at)
    assert "40 tokens here" in _lesson_tables(at)
    # Whatever a page sends, the lesson times at most the bound.
    monkeypatch.setattr(walkthrough_tab, "_tokens", lambda total, hosted: 10**6)
    at.run()
    assert_clean(at)
    assert "40 tokens here" in _lesson_tables(at) and "1,000,000" not in _lesson_tables(at)


def test_a_laptop_times_the_whole_split(app_env, monkeypatch):
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    monkeypatch.setattr(hosting, "MAX_TOKENS", 40)
    at = run_app({"step": "7"})
    assert f"{len(app_env['corpus'].test):,} tokens here" in _lesson_tables(at)


# --- the ONNX cache ------------------------------------------------------------------------------------------------

def test_prune_never_deletes_a_folder_in_use(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    with in_use(old):
        (old / "model.onnx").write_bytes(b"being written")
        with in_use(new):
            pass
        assert prune(tmp_path, keep=0) == [new]  # the other one is in use
        assert (old / "model.onnx").is_file()
    assert prune(tmp_path, keep=0) == [old]


def test_prune_skips_a_folder_another_process_uses(tmp_path):
    entry = tmp_path / "export"
    code = ("import sys, time; from pathlib import Path; from wlm.cache import in_use\n"
            "with in_use(Path(sys.argv[1])):\n    print('ready', flush=True); time.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(entry)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert prune(tmp_path, keep=0) == [] and entry.is_dir()
    finally:
        child.kill()
        child.wait(10)
    assert prune(tmp_path, keep=0) == [entry]


# --- one measurement for a class ---------------------------------------------------------------------------------

def _rows_timed(monkeypatch) -> list[str]:
    """The labels of the variants table's rows as each is measured (not lent)."""
    from ui import backend

    backend.variant_row.clear()
    timed, original = [], backend.measure_variant
    monkeypatch.setattr(backend, "measure_variant",
                        lambda model, ids, engine, variant, **k: (timed.append(variant.label),
                                                                  original(model, ids, engine, variant, **k))[1])
    return timed


def _shared_captions(at) -> list[str]:
    return [c.value for c in at.tabs[2].caption if "for another visitor" in c.value]


def test_a_measurement_another_visitor_asked_for_is_shared_with_its_age_and_can_be_made_again(hosted, monkeypatch):
    timed = _rows_timed(monkeypatch)
    teacher = run_app({"tab": "speed-accuracy"})
    teacher.button(key="speed_go").click().run()
    assert_clean(teacher)
    rows = ["fp32", "tutorial"]  # the sidebar's setup is the tutorial's, which the variants include
    assert timed == rows and not _shared_captions(teacher)
    student = run_app({"tab": "speed-accuracy"})
    student.button(key="speed_go").click().run()
    assert_clean(student)
    assert timed == rows  # the same setup and tokens: the teacher's measurement, not a second one
    shared = _shared_captions(student)
    assert len(shared) == 1 and shared[0].startswith(":material/group: Measured ") and " s ago" in shared[0]
    assert student.tabs[2].dataframe[0].value.equals(teacher.tabs[2].dataframe[0].value)
    student.button(key="speed_again_go").click().run()
    assert_clean(student)
    assert timed == rows + rows  # the student's own measurement, every row of it
    assert not _shared_captions(student)


def test_a_different_setup_times_only_its_own_row_and_says_which_rows_were_lent(hosted, monkeypatch):
    timed = _rows_timed(monkeypatch)
    teacher = run_app({"tab": "speed-accuracy"})
    teacher.button(key="speed_go").click().run()
    assert_clean(teacher)
    student = run_app({"tab": "speed-accuracy", "preset": "int8+emb8"})
    student.button(key="speed_go").click().run()
    assert_clean(student)
    assert timed == ["fp32", "tutorial", "int8+emb8"]  # float's and the tutorial's rows were the teacher's
    (shared,) = _shared_captions(student)
    assert shared.startswith(":material/group: fp32 and tutorial were timed ") and " s ago " in shared
    assert shared.endswith("so this page timed only its other rows.")
    mine, theirs = student.tabs[2].dataframe[0].value, teacher.tabs[2].dataframe[0].value
    assert list(mine["variant"]) == ["fp32", "int8+emb8", "tutorial"]
    lent = mine.set_index("variant").loc[["fp32", "tutorial"]]
    assert lent.equals(theirs.set_index("variant").loc[["fp32", "tutorial"]])  # speedup too: against the same fp32
    own = mine.set_index("variant").loc["int8+emb8"]
    assert own["speedup"] == pytest.approx(own["tokens_per_s"] / lent.loc["fp32", "tokens_per_s"])
