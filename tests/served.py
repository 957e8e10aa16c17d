"""`streamlit run` of the app on a free local port, and the system Chromium that drives it.

Shared by the real-browser tests (their ``served_app`` fixture is in conftest.py) and the benchmarks in bench/.
`playwright install` cannot download here, so both launch Debian's `chromium` with the flags a sandboxed, offline,
headless run needs.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"  # a traceback or an st.error on a page
SHOTS = REPO / "artifacts" / "browser"  # the browser tests' screenshots (ignored by git)
TIMEOUT_MS = 90_000  # a page's default timeout in the browser tests: two cores run the server and the browser
# The page's own record of its script run ('running' / 'notRunning'), which the browser tests wait on.
IDLE = ("() => document.querySelector(\"[data-testid='stApp']\")?.dataset.testScriptState === 'notRunning'"
        " && !document.querySelector(\"[data-testid='stStatusWidgetRunningIcon']\")")


def need_browser() -> None:
    """Skip the calling test unless Debian's Chromium and the playwright package are installed (in CI: fail)."""
    import importlib.util

    import pytest

    for present, what in ((Path(CHROMIUM).is_file(), f"Debian's chromium ({CHROMIUM})"),
                          (importlib.util.find_spec("playwright") is not None, "the playwright Python package")):
        if not present:
            if os.environ.get("CI"):
                pytest.fail(f"CI must provide {what}")
            pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict, output=subprocess.DEVNULL, timeout: float = 90.0,
              repo: Path = REPO) -> tuple[subprocess.Popen, str]:
    """Launch the app of ``repo`` (this checkout, or a copy of it) and wait for its health check.

    Returns the server process and its URL.
    Raises RuntimeError when the server exits or stays silent for ``timeout`` seconds (it is stopped then)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(repo / "streamlit_app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         # A source file saved while a test runs would otherwise be reloaded under the running sessions.
         "--server.fileWatcherType", "none"],
        cwd=repo, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return server, url
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stop_app(server)
            raise RuntimeError("streamlit did not start")
        time.sleep(0.05)


def stop_app(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
