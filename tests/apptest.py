"""Driving the app headless with AppTest: start it, and read what it shows."""
import threading

from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest

from conftest import REPO

APP = str(REPO / "streamlit_app.py")

# AppTest gives every run a fresh ScriptCache, so sessions driven from several threads compile the script at the
# same moment, and CPython 3.11's parser is not safe across threads ("AST constructor recursion depth mismatch").
# A served app has one cache whose own lock already serialises this; one lock here does the same for tests.
_COMPILING = threading.Lock()
_get_bytecode = ScriptCache.get_bytecode


def _compile_one_at_a_time(self, script_path):
    with _COMPILING:
        return _get_bytecode(self, script_path)


ScriptCache.get_bytecode = _compile_one_at_a_time


def run_app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts_of(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def takeaways(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("**Takeaway:**")]


def size_table(at: AppTest):
    return at.tabs[0].table[0].value  # the Model section's only table
