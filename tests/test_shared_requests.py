"""Many sessions on one server asking for the same thing at once: a class that opened the same link. The
measurement is computed once and shared (Streamlit's cache lets one session compute a value while the others
wait for it), and the same seed writes the same text in every session."""
import threading
from concurrent.futures import ThreadPoolExecutor

import streamlit as st

from apptest import assert_clean, run_app

SESSIONS = 5


def _all_at_once(work, sessions):
    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        return list(pool.map(work, sessions))


def _opened(n: int, query: dict):
    st.cache_data.clear()  # counted from nothing: no earlier test's result may answer
    return _all_at_once(lambda _: run_app(query), range(n))


def test_identical_evaluations_from_many_sessions_are_computed_once(app_env, monkeypatch):
    from ui import backend, speed_tab

    calls, asked = [], []
    everyone_asked = threading.Condition()
    ask, measure = speed_tab.variant_table, backend.measure_variant

    def asking(*args, **kwargs):
        with everyone_asked:
            asked.append((args[0].key, args[1].key, *args[2:5]))
            everyone_asked.notify_all()
        return ask(*args, **kwargs)

    def counted(model, ids, engine, variant, **kwargs):
        calls.append(variant.label)
        # The measurement starts once every session has asked for it, so the others are waiting while it runs
        # (not merely finding it cached afterwards).
        with everyone_asked:
            everyone_asked.wait_for(lambda: len(asked) >= SESSIONS, timeout=60)
        return measure(model, ids, engine, variant, **kwargs)

    monkeypatch.setattr(speed_tab, "variant_table", asking)
    monkeypatch.setattr(backend, "measure_variant", counted)
    pages = _opened(SESSIONS, {"preset": "int8+emb8", "tab": "speed-accuracy"})
    for at in pages:
        assert_clean(at)

    def press(at):
        at.button(key="speed_go").click()
        return at.run()

    pages = _all_at_once(press, pages)  # pressed together: the first computes, the others wait for its result
    for at in pages:
        assert_clean(at)
    tables = [at.tabs[2].dataframe[0].value for at in pages]
    assert len(asked) == SESSIONS and len(set(asked)) == 1, asked  # the same request from every session
    # Each row of the table measured once for the whole class: fp32, the link's preset, and the tutorial's.
    assert calls == ["fp32", "int8+emb8", "tutorial"], f"rows measured for {SESSIONS} identical requests: {calls}"
    for table in tables[1:]:
        assert table.equals(tables[0])  # the one measurement, shown to all


def test_the_same_seed_writes_the_same_text_in_every_session(app_env):
    pages = _opened(SESSIONS, {"preset": "tutorial", "seed": "7", "tab": "generate"})

    def press(at):
        at.button(key="gen_go").click()
        return at.run()

    pages = _all_at_once(press, pages)
    results = []
    for at in pages:
        assert_clean(at)
        results.append({k: at.session_state["gen_result"][k] for k in ("float", "quantized")})
    assert len(results[0]["float"]) == 100
    assert all(result == results[0] for result in results[1:]), results
