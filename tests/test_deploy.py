"""deploy/serve: replicas of the app behind HAProxy. It refuses to start without haproxy or on a taken port; in a
real browser, visitors spread over the replicas and stay on theirs, a dead replica's visitors get a working page
from a live one, and SIGTERM leaves no process or port behind.

Needs Debian's `haproxy` and `chromium` packages and the `playwright` Python package (.ci/run installs them).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_until
from launcher import SERVE, Launched, free_ports, nothing_listens, replica_of, still_ours
from served import CHROMIUM, CHROMIUM_ARGS, REPO

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # reported by the test itself
    sync_playwright = None

TIMEOUT_MS = 120_000
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"


def _need(condition: bool, what: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {what}")
        pytest.skip(f"{what} is not installed")


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # Through this interpreter: a PATH without haproxy may be without python3 as well.
    return subprocess.run([sys.executable, str(SERVE), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def _refused(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""  # nothing started, so nothing announced
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_refuses_without_haproxy(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    line = _refused(_serve("--replicas", "2", "--port", str(free_ports(3)), "--logs", str(tmp_path / "logs"),
                           env={**os.environ, "PATH": str(empty)}))
    assert line.startswith("deploy/serve: haproxy is not installed"), line


@pytest.mark.parametrize("taken", [0, 2], ids=["haproxy's port", "a replica's port"])
def test_refuses_a_taken_port_before_starting_anything(tmp_path, taken):
    _need(shutil.which("haproxy") is not None, "Debian's haproxy")
    first = free_ports(3)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first + taken))
        holder.listen()
        started = time.monotonic()
        line = _refused(_serve("--replicas", "2", "--port", str(first), "--logs", str(tmp_path / "logs")))
    assert f"port {first + taken} on 127.0.0.1" in line and "is taken" in line, line
    assert time.monotonic() - started < 30  # refused at once, not after starting servers
    assert not (tmp_path / "logs" / "r1.log").exists()


# --- in a real browser ----------------------------------------------------------------------------------------------

@pytest.fixture
def launched(tiny_app, tmp_path):
    """deploy/serve with 2 replicas on free ports, serving the tiny trained model; always stopped afterwards."""
    _need(shutil.which("haproxy") is not None, "Debian's haproxy")
    _need(Path(CHROMIUM).is_file(), f"Debian's chromium ({CHROMIUM})")
    _need(sync_playwright is not None, "the playwright Python package")
    env = {**os.environ, "WLM_MODEL": str(tiny_app["bundle"]), "WLM_DATA_DIR": str(tiny_app["data"])}
    with Launched(2, tmp_path / "serve", env) as running:
        running.wait_for_line("the class can connect", 300)
        yield running


def _page_works(page) -> None:
    """The page drew its Model tab, to its takeaway, without an error. The tab is clicked: the page's address
    carries the Walkthrough's `step`, so a reloaded page opens on the Walkthrough."""
    page.get_by_role("tab", name="Model").click()
    page.get_by_role("tabpanel").filter(has_text="Takeaway:").first.wait_for()
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).first.inner_text()


@pytest.mark.browser
def test_visitors_spread_stick_and_survive_a_dead_replica(launched):
    assert sorted(launched.replicas) == ["r1", "r2"] and launched.haproxy_pid
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            visitors = []
            for _ in range(4):  # one after another, each its own cookie jar
                context = browser.new_context(viewport={"width": 1200, "height": 900})
                context.set_default_timeout(TIMEOUT_MS)
                page = context.new_page()
                page.goto(launched.url)
                _page_works(page)
                visitors.append((context, page, replica_of(context)))
            assert {replica for *_, replica in visitors} == {"r1", "r2"}, [r for *_, r in visitors]  # spread
            for context, page, replica in visitors:  # and stick
                page.reload()
                _page_works(page)
                assert replica_of(context) == replica

            victim = next(v for v in visitors if v[2] == "r1")
            survivor = next(v for v in visitors if v[2] == "r2")
            survivor_page = survivor[1]
            survivor_page.get_by_role("tab", name="Generate").click()
            survivor_page.get_by_role("button", name="Generate", exact=True).click()
            os.kill(launched.replicas["r1"][0], signal.SIGKILL)  # a crash, not a clean stop
            victim[1].reload()  # the next request of r1's visitor goes to r2
            _page_works(victim[1])
            assert replica_of(victim[0]) == "r2"
            generated = survivor_page.get_by_role("tabpanel").filter(has_text="Takeaway:")
            generated.filter(has_text="quantized (tutorial)").first.wait_for()
            assert survivor_page.locator(ERRORS).count() == 0
            assert replica_of(survivor[0]) == "r2"
        finally:
            browser.close()
    # Two replicas on fewer than 4 cores were said to share them, on stderr, before anything started.
    assert ("replicas on" in launched.stderr()) == (len(os.sched_getaffinity(0)) < 4), launched.stderr()
    # The launcher noticed (it checks twice a second) and kept serving.
    assert wait_until(lambda: "replica r1 (pid" in launched.stderr()), launched.stderr()
    assert launched.process.poll() is None

    assert launched.stop() == 0
    assert all(nothing_listens(port) for port in launched.ports()), launched.ports()
    assert not [pid for pid in launched.pids() if still_ours(pid)], launched.pids()
