"""Soak the app as a class would: one `streamlit run` server, many real browser sessions.

    python bench/soak_app.py [--sessions 100] [--concurrent 20] [--hosted]

First ``--sessions`` sessions open one after another, each from a link with a different quantization
setup (preset, lstm, linear, emb, bits, dtype, pc), and wait for the Model tab to finish; then
``--concurrent`` sessions open together and, all at once, half generate text and half run the speed
evaluation. After every session it prints the memory of the server's process tree (resident set),
and at the end the slowest page and every error seen (on a page, in the browser, or in the server's
log). A benchmark to run by hand, not a test: pytest does not collect it and it asserts nothing.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

# Run as `python bench/soak_app.py` from the repository's root (or anywhere): the repository (wlm, ui) and the
# tests' shared helpers (served.py) go on the path, after this folder.
sys.path[1:1] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from served import CHROMIUM, CHROMIUM_ARGS, REPO, start_app, stop_app

ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"
RUNNING = "[data-testid='stStatusWidgetRunningIcon']"
PRESETS = ("fp32", "tutorial", "int8+emb8", "int8+emb4", "float16", "per-channel")


def setups() -> list[dict[str, str]]:
    """Links' query parameters for distinct setups: the presets, then the sidebar's toggles combined."""
    links = [{"preset": name} for name in PRESETS]
    seen = {(True, True, False, 8, "qint8", False), (True, True, True, 8, "qint8", False),  # the presets' own
            (True, True, True, 4, "qint8", False), (True, True, False, 8, "float16", False),
            (True, True, False, 8, "qint8", True)}
    for lstm, linear, emb, bits, dtype, pc in itertools.product((True, False), (True, False), (False, True), (8, 4),
                                                                ("qint8", "float16"), (False, True)):
        if (pc and dtype != "qint8") or (bits == 4 and not emb) or not (lstm or linear or emb):
            continue
        # What the model holds: dtype and per-channel mean nothing without LSTM or Linear, bits nothing without emb.
        key = (lstm, linear, emb, bits if emb else 8, dtype if lstm or linear else "-", pc and linear)
        if key in seen:
            continue
        seen.add(key)
        links.append({"preset": "custom", "lstm": lstm, "linear": linear, "emb": emb, "bits": bits,
                      "dtype": dtype, "pc": pc})
    return [{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in link.items()} for link in links]


def descendants(pid: int) -> list[int]:
    """A process and all its descendants (a server may start helpers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total = 0
    for current in descendants(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
        except (OSError, IndexError):
            pass
    return total / 1024


def wait_until_idle(page) -> None:
    """Until the script run is over: the running icon must stay away a while (it shows after a delay)."""
    while True:
        page.wait_for_function(f"() => !document.querySelector(\"{RUNNING}\")")
        page.wait_for_timeout(800)
        if page.locator(RUNNING).count() == 0:
            return


def page_errors(page) -> list[str]:
    found = page.locator(ERRORS)
    return [" ".join(found.nth(i).inner_text().split())[:300] for i in range(found.count())]


def open_session(context, url: str, link: dict[str, str], errors: list[str], label: str):
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{label}: browser error: {exc}"))
    page.goto(f"{url}/?{urlencode(link)}")
    return page


def sequential(browser, url: str, server_pid: int, n: int, keep_open: bool, timeout_ms: int, errors: list[str]):
    links, rows, kept = setups(), [], []
    print(f"{n} sessions one after another, {len(links)} distinct setups in turn")
    print("| session | setup | open -> Model tab done (s) | server memory (MB) | errors |")
    print("|---:|---|---:|---:|---|")
    for i in range(n):
        link = links[i % len(links)]
        label = f"session {i + 1} ({urlencode(link)})"
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        context.set_default_timeout(timeout_ms)
        started = time.monotonic()
        seen: list[str] = []
        try:
            page = open_session(context, url, link, seen, label)
            page.get_by_role("tab", name="Model").wait_for()
            page.get_by_role("tabpanel").filter(has_text="Takeaway:").first.wait_for()
            wait_until_idle(page)
            seen += [f"{label}: {e}" for e in page_errors(page)]
        except PlaywrightError as exc:
            seen.append(f"{label}: {str(exc).splitlines()[0]}")
        seconds = time.monotonic() - started
        memory = tree_rss_mb(server_pid)
        rows.append((label, seconds, memory))
        errors += seen
        shown = "preset=" + link["preset"] + ("" if link["preset"] != "custom" else " " + " ".join(
            f"{k}={v}" for k, v in link.items() if k != "preset"))
        print(f"| {i + 1} | {shown} | {seconds:.1f} | {memory:.0f} | {len(seen) or ''} |", flush=True)
        if keep_open:
            kept.append(context)
        else:
            context.close()
    return rows, kept


def concurrent(browser, url: str, server_pid: int, m: int, timeout_ms: int, errors: list[str]):
    """``m`` sessions at once: even ones generate, odd ones run the speed evaluation, all clicked together."""
    print(f"\n{m} sessions at once: {(m + 1) // 2} generate, {m // 2} evaluate")
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.set_default_timeout(timeout_ms)
    links = setups()
    pages, rows = [], []
    for i in range(m):
        query = {**links[i % len(links)], "seed": str(i)}
        pages.append(open_session(context, url, query, errors, f"concurrent {i + 1}"))
    for i, page in enumerate(pages):
        page.get_by_role("tab", name="Generate" if i % 2 == 0 else "Speed & accuracy").click()
    for page in pages:
        wait_until_idle(page)
    started = time.monotonic()
    for i, page in enumerate(pages):
        page.get_by_role("button", name="Generate" if i % 2 == 0 else "Run evaluation", exact=True).click()
    # Times run from the one moment all were clicked and pages are checked in order, so a page that
    # finished before the one checked ahead of it reads as late as that one: an upper bound.
    print("| session | action | click -> takeaway (s) | server memory (MB) | errors |")
    print("|---:|---|---:|---:|---|")
    for i, page in enumerate(pages):
        label, action = f"concurrent {i + 1}", "generate" if i % 2 == 0 else "evaluate"
        seen: list[str] = []
        try:
            page.get_by_role("tabpanel").filter(has_text="Takeaway:").first.wait_for()
            seen += [f"{label}: {e}" for e in page_errors(page)]
        except PlaywrightError as exc:
            seen.append(f"{label}: {str(exc).splitlines()[0]}")
        seconds, memory = time.monotonic() - started, tree_rss_mb(server_pid)
        rows.append((f"{label} ({action})", seconds, memory))
        errors += seen
        print(f"| {i + 1} | {action} | {seconds:.1f} | {memory:.0f} | {len(seen) or ''} |", flush=True)
    context.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100, help="sessions opened one after another")
    parser.add_argument("--concurrent", type=int, default=20, help="sessions that generate and evaluate at once")
    parser.add_argument("--keep-open", action="store_true",
                        help="keep every sequential session open (as a class would; costs the browser memory)")
    parser.add_argument("--hosted", action="store_true", help="start the server with WLM_HOSTED=1")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one page may take")
    args = parser.parse_args()
    env = {**os.environ, **({"WLM_HOSTED": "1"} if args.hosted else {})}
    log_path = REPO / "artifacts" / "soak-streamlit.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    timeout_ms = int(args.timeout * 1000)
    with open(log_path, "w") as log:
        launched = time.monotonic()
        server, url = start_app(env, output=log)
        print(f"server up in {time.monotonic() - launched:.1f} s, memory {tree_rss_mb(server.pid):.0f} MB")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                rows, kept = sequential(browser, url, server.pid, args.sessions, args.keep_open, timeout_ms, errors)
                if args.concurrent:
                    rows += concurrent(browser, url, server.pid, args.concurrent, timeout_ms, errors)
                for context in kept:
                    context.close()
                browser.close()
        finally:
            stop_app(server)
    logged = log_path.read_text(errors="replace")
    if "Traceback" in logged:
        errors.append(f"server log has a traceback (see {log_path.relative_to(REPO)})")
    slowest = max(rows, key=lambda row: row[1])
    memory = [row[2] for row in rows]
    print(f"\nslowest page: {slowest[0]}, {slowest[1]:.1f} s")
    print(f"server memory: first session {memory[0]:.0f} MB, peak {max(memory):.0f} MB, last {memory[-1]:.0f} MB")
    print(f"errors: {len(errors)}")
    for error in errors:
        print(f"  {error}")


if __name__ == "__main__":
    main()
