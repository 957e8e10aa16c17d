"""Driving the app headless with AppTest: start it, and read what it shows."""
import threading

from streamlit import config
from streamlit.runtime import Runtime
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

# Each AppTest run installs a mock Runtime as the process's one instance and removes it when it ends, so a run that
# ends while another thread's run is still going leaves that one without a runtime ("Runtime hasn't been created!").
# A served app has one runtime for all its sessions; here the runs going on at once share the last one installed.
_RUNS = threading.Lock()
_running = 0
_last_runtime = None
_run_once = AppTest._run
_instance = Runtime.instance.__func__


def _run_beside_others(self, *args, **kwargs):
    global _running
    with _RUNS:
        _running += 1
    try:
        return _run_once(self, *args, **kwargs)
    finally:
        with _RUNS:
            _running -= 1


def _shared_instance(cls):
    global _last_runtime
    with _RUNS:
        if cls._instance is not None:
            _last_runtime = cls._instance
        elif _running and _last_runtime is not None:
            return _last_runtime
    return _instance(cls)


AppTest._run = _run_beside_others
Runtime.instance = classmethod(_shared_instance)

# Each run also patches config.get_option to say global.appTest (which makes widgets keep what AppTest reads), and
# a run that ends puts back the getter it found, which may be the real one while another thread's run goes on: the
# real option says so too.
config.set_option("global.appTest", True)


def run_app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def open_tab(at: AppTest, title: str) -> AppTest:
    """Click tab ``title`` and let the page rerun: only the open tab runs."""
    at.session_state["open_tab"] = title
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


def html_words(html: str) -> list[str]:
    """The words of a text the page shows as HTML (``<br>`` for each ``<eos>``), tags and highlights removed."""
    import re

    return re.sub(r"<(?!br>)[^>]+>", " ", html).replace("<br>", " <eos> ").split()


def marked_word(html: str) -> int | None:
    """The position of the highlighted (``<mark>``) word in such a text: the words and line breaks before it."""
    return None if "<mark" not in html else len(html_words(html[:html.index("<mark")]))


def chart_data(chart) -> list:
    """The data sets a chart element sends to the browser, as DataFrames (a layered chart has several)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return [convert_arrow_bytes_to_pandas_df(named.data.data) for named in chart.proto.datasets]


def deferred_downloads(monkeypatch) -> dict:
    """What each download button made when clicked would serve: {its proto's deferred_file_id: a callable giving
    the bytes}. Streamlit runs a button's ``data`` callable only on a click, which AppTest cannot make; this keeps
    the callables it registers. Call before ``run_app``."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    served: dict = {}
    register = MediaFileManager.add_deferred

    def add_deferred(self, data, *args, **kwargs):
        file_id = register(self, data, *args, **kwargs)
        served[file_id] = lambda: (lambda out: out if isinstance(out, bytes) else out.read())(data())
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return served
