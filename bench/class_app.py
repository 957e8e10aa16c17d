"""A class on several replicas: `deploy/serve` (HAProxy in front of hosted servers) driven by real browsers.

    python bench/class_app.py [--visitors 6] [--replicas 2]

For 1 replica and then for ``--replicas``, in the same run, ``--visitors`` visitors (each a Chromium context of its
own, so each gets its own `wlm_replica` cookie) open two pages each through HAProxy's port, the Generate tab and the
Speed & accuracy tab, and all press "Generate" and "Run evaluation" at once. Scenarios: every visitor opened the
same link (same setup and seed); on request (``--scenarios same,again``) a second class of new pages on the same
link right after it, whose results the servers have ready (what is left is the browsers' and the page runs' own
work); and every visitor a different setup (``soak_app.setups()``). It prints the time until the last visitor sees
both results, each replica's memory (resident set of its process tree), the CPU seconds the browsers and each
replica spent from the press to the last result, and how the visitors spread over the replicas. With several
replicas it then kills one mid-class (SIGKILL, as a crash) and reports what its visitors saw and got on reload, and
whether the others' results completed. Markdown tables; a benchmark to run by hand, not a test (pytest does not
collect it and it asserts nothing).

The launcher's helpers (``Launched``, ``replica_of``) are tests/launcher.py's, shared with tests/test_deploy.py.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

# Run as `python bench/class_app.py` from the repository's root (or anywhere): the repository (wlm, ui) and the
# tests' shared helpers (served.py, launcher.py) go on the path, after this folder.
sys.path[1:1] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from soak_app import descendants, setups, tree_rss_mb, wait_until_idle

from launcher import READY, Launched, nothing_listens, replica_of
from served import CHROMIUM, CHROMIUM_ARGS, REPO

ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"
RUNNING = "[data-testid='stStatusWidgetRunningIcon']"


# --- the pages ----------------------------------------------------------------------------------------------------

def visible_panel(page):
    return page.get_by_role("tabpanel")  # hidden tabs' panels are not in the accessibility tree


def has_result(page, kind: str) -> bool:
    panel = visible_panel(page)
    if kind == "evaluate" and panel.locator("[data-testid='stDataFrame']").count() == 0:
        return False
    return panel.filter(has_text="Takeaway:").count() > 0


BUTTONS = {"generate": "Generate", "evaluate": "Run evaluation"}
TABS = {"generate": "generate", "evaluate": "speed-accuracy"}

# Pressed inside the page, and watched there: each page is told beforehand the moment (``at``, Date.now()) to click,
# so a class presses together however long the benchmark takes to reach forty pages, and the page notes when its
# button was clicked and when its result or an error first showed. Forty pages polled through Playwright, as the
# browser tests do, would spend the cores the servers need; this way the benchmark asks each page once a second.
PRESS_AND_WATCH = """([name, needsTable, at]) => {
  const visible = (el) => el.offsetParent !== null;
  const button = [...document.querySelectorAll("button")].find((b) => visible(b) && b.innerText.trim() === name);
  if (!button) return null;
  const panel = button.closest("[role='tabpanel']");
  const seen = (window.__wlm = {clicked: null, done: null, error: null});
  const check = () => {
    if (seen.done || seen.error) return;
    const failed = document.querySelector("%s");
    if (failed) { seen.error = failed.textContent.slice(0, 200); seen.done = Date.now(); return; }
    // textContent, not innerText: reading it needs no layout, so watching costs the page next to nothing.
    if (!panel.textContent.includes("Takeaway:")) return;
    if (needsTable && !panel.querySelector("[data-testid='stDataFrame']")) return;
    seen.done = Date.now();
  };
  let queued = false;  // one check per 200 ms at most, however often Streamlit redraws
  new MutationObserver(() => {
    if (!queued) { queued = true; setTimeout(() => { queued = false; check(); }, 200); }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
  setTimeout(() => { seen.clicked = Date.now(); button.click(); }, Math.max(0, at - Date.now()));
  return true;
}""" % ERRORS.replace('"', "'")


class Visitor:
    """One person: a browser context of their own and two pages, the Generate tab and the Speed & accuracy tab."""

    def __init__(self, browser, url: str, link: dict[str, str], label: str, timeout_ms: int):
        self.label, self.link, self.url = label, link, url
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        self.context.set_default_timeout(timeout_ms)
        self.errors: list[str] = []
        self.pages = {}
        for kind in BUTTONS:
            page = self.context.new_page()
            page.on("pageerror", lambda exc, kind=kind: self.errors.append(f"{label} {kind}: browser error: {exc}"))
            self.pages[kind] = page
        self.done: dict[str, float] = {}  # kind -> seconds from the moment of the press to its result
        self.clicked: dict[str, float] = {}  # kind -> when its page clicked (time.time())
        self.failed: set[str] = set()  # kinds whose page showed an error instead
        self.replica: str | None = None  # from the cookie, once the pages are open
        self.reload_s, self.after, self.kept = float("nan"), None, {}  # after its replica was killed

    def open(self) -> None:
        # The first page alone, so that the context has its cookie before the second asks for anything.
        for kind, page in self.pages.items():
            page.goto(f"{self.url}/?{urlencode({**self.link, 'tab': TABS[kind]})}")
            page.get_by_role("button", name=BUTTONS[kind], exact=True).wait_for()
        self.replica = replica_of(self.context)

    def ready(self) -> None:
        for page in self.pages.values():
            wait_until_idle(page)

    def arm(self, at: float) -> None:
        """Both pages will click their button at ``at`` (time.time()), on their own clocks."""
        self.done, self.failed, self.clicked = {}, set(), {}
        for kind, name in BUTTONS.items():
            if not self.pages[kind].evaluate(PRESS_AND_WATCH, [name, kind == "evaluate", at * 1000]):
                raise RuntimeError(f"{self.label}: a button was not on its page")

    def clicks(self) -> bool:
        """Whether both pages have clicked; notes when (time.time())."""
        for kind, page in self.pages.items():
            if kind not in self.clicked:
                seen = page.evaluate("() => window.__wlm")
                if seen and seen["clicked"]:
                    self.clicked[kind] = seen["clicked"] / 1000
        return len(self.clicked) == len(self.pages)

    def check(self, started: float) -> bool:
        """Whether both pages are through, with a result or an error; notes when each first was (seconds after
        ``started``, a time.time())."""
        for kind, page in self.pages.items():
            if kind in self.done or kind in self.failed:
                continue
            seen = page.evaluate("() => window.__wlm")
            if not seen or not seen["done"]:
                continue
            if seen["error"]:
                self.failed.add(kind)
                self.errors.append(f"{self.label} {kind}: {' '.join(seen['error'].split())}")
            else:
                self.done[kind] = seen["done"] / 1000 - started
        return len(self.done) + len(self.failed) == len(self.pages)

    def both(self) -> float | None:
        """Seconds from the moment of the press until both results showed, or None if one did not."""
        return max(self.done.values()) if len(self.done) == len(self.pages) else None

    def close(self) -> None:
        self.context.close()


# One page a student: Generate pressed at the moment, then the Speed & accuracy tab, its "Run evaluation", and back
# to the Generate tab, where the text written meanwhile (the writing goes on when the page reruns) shows again.
ONE_PAGE = """([at]) => {
  const visible = (el) => el.offsetParent !== null;
  const panel = () => [...document.querySelectorAll("[role='tabpanel']")].find(visible);
  const button = (name) => [...document.querySelectorAll("button")].find(
    (b) => visible(b) && b.innerText.trim() === name);
  const tab = (name) => [...document.querySelectorAll("[role='tab']")].find((t) => t.innerText.trim() === name);
  const seen = (window.__wlm = {clicked: null, evaluated: null, done: null, error: null});
  const sleep = (ms) => new Promise((go) => setTimeout(go, ms));
  const until = async (met) => {
    for (;;) {
      const failed = document.querySelector("%s");
      if (failed) throw new Error(failed.textContent.slice(0, 200));
      if (met()) return;
      await sleep(200);
    }
  };
  // A result in the panel of the tab just opened: the other tab's panel stays on screen until the switch is drawn.
  const result = (name, table) => () => {
    const open = panel();
    return open && button(name) && open.contains(button(name)) && open.textContent.includes("Takeaway:")
      && (!table || open.querySelector("[data-testid='stDataFrame']"));
  };
  (async () => {
    await sleep(Math.max(0, at - Date.now()));
    try {
      seen.clicked = Date.now();
      button("Generate").click();
      tab("Speed & accuracy").click();
      await until(() => button("Run evaluation") && panel() && panel().contains(button("Run evaluation")));
      button("Run evaluation").click();
      await until(result("Run evaluation", true));
      seen.evaluated = Date.now();
      tab("Generate").click();
      await until(result("Generate", false));
      seen.done = Date.now();
    } catch (error) {
      seen.error = String(error.message || error);
      seen.done = Date.now();
    }
  })();
  return !!button("Generate");
}""" % ERRORS.replace('"', "'")


class OnePageVisitor(Visitor):
    """One person with one page, as a student in a class has: Generate, then Speed & accuracy in the same page."""

    def __init__(self, browser, url: str, link: dict[str, str], label: str, timeout_ms: int):
        self.label, self.link, self.url = label, link, url
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        self.context.set_default_timeout(timeout_ms)
        self.errors: list[str] = []
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{label}: browser error: {exc}"))
        self.page, self.pages = page, {"generate": page}
        self.done, self.clicked, self.failed = {}, {}, set()
        self.replica = None

    def open(self) -> None:
        self.page.goto(f"{self.url}/?{urlencode({**self.link, 'tab': TABS['generate']})}")
        self.page.get_by_role("button", name=BUTTONS["generate"], exact=True).wait_for()
        self.replica = replica_of(self.context)

    def arm(self, at: float) -> None:
        self.done, self.failed, self.clicked = {}, set(), {}
        if not self.page.evaluate(ONE_PAGE, [at * 1000]):
            raise RuntimeError(f"{self.label}: the Generate button was not on the page")

    def clicks(self) -> bool:
        seen = self.page.evaluate("() => window.__wlm")
        if seen and seen["clicked"]:
            self.clicked["generate"] = seen["clicked"] / 1000
        return bool(self.clicked)

    def check(self, started: float) -> bool:
        seen = self.page.evaluate("() => window.__wlm")
        if not seen or not seen["done"]:
            return False
        if seen["error"]:
            self.failed.add("generate")
            self.errors.append(f"{self.label}: {' '.join(seen['error'].split())}")
        else:
            self.done = {"evaluate": seen["evaluated"] / 1000 - started, "generate": seen["done"] / 1000 - started}
        return True

    def both(self) -> float | None:
        return max(self.done.values()) if len(self.done) == 2 else None


class MemoryWatch:
    """Each replica's process-tree memory, sampled twice a second in a thread: the peak and the last value."""

    def __init__(self, replicas: dict[str, tuple[int, int]]):
        self.pids = {name: pid for name, (pid, _) in replicas.items()}
        self.peak = {name: 0.0 for name in self.pids}
        self.last = dict(self.peak)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                mb = tree_rss_mb(pid)
                self.last[name] = mb
                self.peak[name] = max(self.peak[name], mb)
            self._stop.wait(0.5)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class CpuWatch:
    """CPU seconds (user and system) the browsers and each replica's process tree spend while it is entered:
    where a class's time goes when the servers and the browsers share the cores."""

    def __init__(self, replicas: dict[str, tuple[int, int]]):
        self.pids = {name: pid for name, (pid, _) in replicas.items()}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        browsers = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/comm") if _read(p).strip() == "chromium"]
        return {"browsers": _cpu_s(browsers), **{name: _cpu_s(descendants(pid)) for name, pid in self.pids.items()}}

    def __enter__(self) -> CpuWatch:
        self._start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        end = self._now()
        self.spent = {name: end[name] - self._start[name] for name in end}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _cpu_s(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = _read(Path(f"/proc/{pid}/stat")).rsplit(")", 1)[-1].split()
        if len(fields) > 12:
            ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of the line
    return ticks / os.sysconf("SC_CLK_TCK")


def press_at_once(visitors: list[Visitor], confirm: bool = True) -> float:
    """Every visitor's pages click at one moment, a little after each has been told it; returns the moment
    (time.time()), once every page has clicked (with ``confirm``; asking forty busy pages takes seconds)."""
    at = time.time() + 1.0 + 0.05 * len(visitors)  # telling a page takes a round trip of a few ms
    for visitor in visitors:
        visitor.arm(at)
    if time.time() > at:
        print(f"  (telling the pages took {time.time() - at:.1f} s longer than allowed: the first clicked early)")
    time.sleep(max(0.0, at - time.time()))
    waiting = list(visitors) if confirm else []
    while waiting:
        waiting = [v for v in waiting if not v.clicks()]
        if waiting:
            time.sleep(0.2)
    return at


def click_spread(visitors: list[Visitor], at: float) -> float:
    """Seconds from the moment of the press until the last page clicked (a busy browser clicks late)."""
    return max(t for v in visitors for t in v.clicked.values()) - at


def wait_for_results(visitors: list[Visitor], started: float, timeout: float) -> None:
    """Asks every page once a second; each page itself noted when its result showed (``started``: time.time())."""
    deadline = started + timeout
    waiting = list(visitors)
    while waiting and time.time() < deadline:
        waiting = [v for v in waiting if not v.check(started)]
        if waiting:
            waiting[0].pages["generate"].wait_for_timeout(1000)
    for visitor in waiting:
        visitor.errors.append(f"{visitor.label}: no result after {timeout:.0f} s (got {sorted(visitor.done)})")


# --- the scenarios ------------------------------------------------------------------------------------------------

def class_at_once(browser, launched: Launched, links: list[dict[str, str]], timeout: float,
                  visitor=Visitor) -> dict:
    """Every visitor opens their link, then all press both buttons at once (``OnePageVisitor``: one after the other,
    in one page)."""
    visitors = [visitor(browser, launched.url, link, f"visitor {i + 1}", int(timeout * 1000))
                for i, link in enumerate(links)]
    try:
        for visitor in visitors:
            visitor.open()
        for visitor in visitors:
            visitor.ready()
        with MemoryWatch(launched.replicas) as memory, CpuWatch(launched.replicas) as cpu:
            started = press_at_once(visitors)
            clicks = click_spread(visitors, started)
            print(f"  pressed at {time.strftime('%H:%M:%S', time.localtime(started))}", flush=True)
            wait_for_results(visitors, started, timeout)
        spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.spent.items())
        print(f"  CPU from the moment of the press to the last result: {spent}", flush=True)
        return {"visitors": visitors, "memory": memory, "clicks": clicks}
    finally:
        for visitor in visitors:
            visitor.close()


def kill_mid_class(browser, launched: Launched, links: list[dict[str, str]], timeout: float) -> dict:
    """All press at once, and r1 dies (SIGKILL) right after: what its visitors see, and get on reload."""
    visitors = [Visitor(browser, launched.url, link, f"visitor {i + 1}", int(timeout * 1000))
                for i, link in enumerate(links)]
    victim_pid = launched.replicas["r1"][0]
    try:
        for visitor in visitors:
            visitor.open()
        for visitor in visitors:
            visitor.ready()
        started = press_at_once(visitors, confirm=False)
        time.sleep(1.5)  # mid-class: the pages clicked at the moment, and no result comes this soon
        killed_at = time.time() - started
        os.kill(victim_pid, signal.SIGKILL)
        on_dead = [v for v in visitors if v.replica == "r1"]
        others = [v for v in visitors if v.replica != "r1"]
        wait_for_results(others, started, timeout)
        seen = {}
        for visitor in on_dead:
            seen[visitor.label] = what_a_visitor_sees(visitor)
            reloaded = time.monotonic()
            for kind, page in visitor.pages.items():
                page.reload()
                page.get_by_role("button", name=BUTTONS[kind], exact=True).wait_for()
            visitor.reload_s = time.monotonic() - reloaded
            visitor.after = replica_of(visitor.context)
            visitor.kept = {kind: has_result(page, kind) for kind, page in visitor.pages.items()}
            for page in visitor.pages.values():
                wait_until_idle(page)
        again = press_at_once(on_dead)
        wait_for_results(on_dead, again, timeout)
        return {"visitors": visitors, "on_dead": on_dead, "others": others, "seen": seen, "killed_at": killed_at}
    finally:
        for visitor in visitors:
            visitor.close()


def what_a_visitor_sees(visitor: Visitor) -> str:
    """What a visitor whose replica died has on screen before reloading: Streamlit's frontend reconnects by itself,
    and through HAProxy that reaches a live replica, where the page is a new session."""
    notes = []
    for kind, page in visitor.pages.items():
        said = page.get_by_text(re.compile("connection error|connecting|still running", re.I))
        shown = " ".join(said.first.inner_text().split())[:60] if said.count() else "no connection message"
        result = "its result" if has_result(page, kind) else "no result"
        notes.append(f"{kind}: {result}, {shown}")
    return "; ".join(notes) + f"; cookie {replica_of(visitor.context)}"


# --- the report ---------------------------------------------------------------------------------------------------

def spread(visitors: list[Visitor]) -> str:
    counts = Counter(v.replica for v in visitors)
    return ", ".join(f"{name}: {counts[name]}" for name in sorted(counts, key=str))


def report_scenario(rows: list, replicas: int, name: str, result: dict, idle: dict[str, float]) -> None:
    visitors, memory = result["visitors"], result["memory"]
    times = sorted(v.both() for v in visitors if v.both() is not None)
    mem = " · ".join(f"{n} {idle[n]:.0f} → peak {memory.peak[n]:.0f}" for n in sorted(memory.peak))
    errors = sum(len(v.errors) for v in visitors)
    median = f"{times[len(times) // 2]:.1f}" if times else "-"
    last = f"{times[-1]:.1f}" if len(times) == len(visitors) else f"{len(visitors) - len(times)} without both"
    rows.append(f"| {replicas} | {name} | {spread(visitors)} | {result['clicks']:.1f} | {median} | {last} | {mem} | "
                f"{errors or 'none'} |")


def idle_class(executable: str) -> str:
    """A wrapper that starts ``executable`` in Linux's idle scheduling class (its renderers inherit it). Chromium
    sets the niceness of its own processes (some to -8), so ``nice`` does not hold it back; the idle class does."""
    wrapper = Path(tempfile.mkdtemp(prefix="wlm-class-")) / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec chrt --idle 0 {executable} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=6, help="visitors (two pages each) in the class")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of the second run (the first has 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the class may take for its results")
    parser.add_argument("--scenarios", default="same,different",
                        help="which to run, comma-separated: same (link), again (the same link for a second class "
                             "of new pages, right after the first: every row lent, every text cached), different "
                             "(setups)")
    parser.add_argument("--no-kill", action="store_true", help="skip killing a replica mid-class")
    parser.add_argument("--one-page", action="store_true",
                        help="one page a visitor, as a student has: Generate, then the Speed & accuracy tab and its "
                             "Run evaluation, then back to Generate for the text (by default two pages a visitor, "
                             "one per tab, pressed at once)")
    parser.add_argument("--idle-browsers", action="store_true",
                        help="run Chromium in the idle scheduling class: the browsers take only the cores the servers "
                             "leave, as students' own machines would (by default they compete as equals)")
    args = parser.parse_args()
    k = args.visitors
    same = [{"preset": "int8+emb8", "seed": "1"}] * k
    links = setups()
    different = [{**links[i % len(links)], "seed": str(i)} for i in range(k)]
    for_the_kill = [{**links[(k + i) % len(links)], "seed": str(k + i)} for i in range(k)]
    env = {name: value for name, value in os.environ.items() if name != "WLM_MODEL"}  # the bundled model
    rows, all_errors, kill = [], [], None
    with sync_playwright() as p:
        chromium = idle_class(CHROMIUM) if args.idle_browsers else CHROMIUM
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for n in sorted({1, args.replicas}):
            logs = REPO / "artifacts" / "class" / f"{n}-replicas"
            launched_at = time.monotonic()
            with Launched(n, logs, env) as launched:
                launched.wait_for_line(READY, 600)
                print(f"{n} replica(s) up in {time.monotonic() - launched_at:.1f} s", flush=True)
                idle = {name: tree_rss_mb(pid) for name, (pid, _) in launched.replicas.items()}
                chosen = set(args.scenarios.split(","))
                for key, name, scenario in (("same", "same link", same),
                                            ("again", "same link, a second class", same),
                                            ("different", "different setups", different)):
                    if key not in chosen:
                        continue
                    result = class_at_once(browser, launched, scenario, args.timeout,
                                           OnePageVisitor if args.one_page else Visitor)
                    report_scenario(rows, n, name, result, idle)
                    print(rows[-1], flush=True)
                    for kind in BUTTONS:
                        done = sorted(v.done[kind] for v in result["visitors"] if kind in v.done)
                        if done:
                            print(f"  {kind}: first {done[0]:.1f} s, median {done[len(done) // 2]:.1f} s, "
                                  f"last {done[-1]:.1f} s ({len(done)} of {len(result['visitors'])})", flush=True)
                    all_errors += [e for v in result["visitors"] for e in v.errors]
                    idle = dict(result["memory"].last)
                if n > 1 and not args.no_kill:
                    kill = kill_mid_class(browser, launched, for_the_kill, args.timeout)
                    kill["launcher_said"] = [line for line in launched.stderr().splitlines() if "r1" in line]
                    all_errors += [e for v in kill["visitors"] for e in v.errors]
                status = launched.stop()
                left = [port for port in launched.ports() if not nothing_listens(port)]
                print(f"launcher stopped (status {status}); ports still open: {left or 'none'}", flush=True)
        browser.close()
    pages = ("one page, pressing Generate, then Run evaluation on Speed & accuracy, then back to Generate"
             if args.one_page else "a Generate page and a Speed & accuracy page, all pressed at once")
    print(f"\n{k} visitors, each with {pages} "
          "(seconds from the moment all pressed; memory in MB, resident set of each replica's process tree, "
          "before → peak)\n")
    print("| replicas | scenario | visitors per replica | last click (s) | median visitor (s) | last visitor (s) | "
          "replica memory (MB) | errors |")
    print("|---:|---|---|---:|---:|---:|---|---|")
    print("\n".join(rows))
    if kill:
        print_kill(kill)
    print(f"\nerrors: {len(all_errors)}")
    for error in all_errors:
        print(f"  {error}")


def print_kill(kill: dict) -> None:
    print(f"\nr1 killed (SIGKILL) {kill['killed_at']:.1f} s after the press; its "
          "visitors, once the others' results were in, reloaded both pages and pressed again\n")
    print("| visitor | replica | saw before reloading | reload → page drawn (s) | replica after reload | results kept "
          "| pressed again → both results (s) |")
    print("|---|---|---|---:|---|---|---:|")
    for v in kill["on_dead"]:
        kept = ", ".join(kind for kind, yes in v.kept.items() if yes) or "none"
        done = f"{v.both():.1f}" if v.both() is not None else f"not all ({sorted(v.done)} of both)"
        print(f"| {v.label} | r1 | {kill['seen'][v.label]} | {v.reload_s:.1f} | {v.after} | {kept} | {done} |")
    print("\n| visitor | replica | both results (s after the press) |")
    print("|---|---|---:|")
    for v in kill["others"]:
        done = f"{v.both():.1f}" if v.both() is not None else f"not all (only {sorted(v.done)})"
        print(f"| {v.label} | {v.replica} | {done} |")
    print("\nlauncher's stderr about r1: " + (" / ".join(kill["launcher_said"]) or "nothing"))


if __name__ == "__main__":
    main()
