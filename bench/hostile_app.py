"""A hostile visitor on a shared server: does a class still get its lesson while someone attacks the app?

    python bench/hostile_app.py [--ordinary 10] [--minutes 20]

Starts one hosted server (``WLM_HOSTED=1``, the bundled model and corpus) and drives it with real browsers
(Playwright, Debian's Chromium, 1280x720). ``--ordinary`` students each open the page in a browser context
of their own (half on the tutorial's preset, half per-channel, each its own seed) and work through the tabs:
the Model tab, Generate, Speed & accuracy's evaluation, Fidelity's output comparison, the Fewer bits sweep,
and the Walkthrough up to step 7. Every step is timed; errors on the page, in the browser's console and in
the server's log are kept.

Meanwhile one hostile visitor, in browser contexts of its own, repeats every attack until the students are
done: 20,000-word texts and prompts; crafted checkpoint uploads (zero-stride tensors of a huge shape, int64
tensors, a float16 model of 64 M parameters); the Walkthrough's step 7 on the whole test split; Streamlit's
``clear_cache`` sent from a raw websocket; ten pages evaluating at once and five sweeping at once. A refusal
on the hostile visitor's pages is the hardened app doing its job, never a student's error.

A background thread samples the memory of the server's process tree every second. The summary (Markdown
tables, also written to artifacts/hostile.json) gives memory over time, its peak, each student's slowest
step and errors, what each attack got, and whether the server stayed up. Targets (reported, not asserted):
the server stays up, every student finishes without an error, server memory stays under 1.5 GB.

A benchmark to run by hand, not a test: pytest does not collect it and it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

# Run as `python bench/hostile_app.py` from the repository's root (or anywhere): the repository (wlm, ui) and the
# tests' shared helpers (served.py) go on the path, after this folder.
sys.path[1:1] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

import torch
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright
from soak_app import ERRORS, RUNNING, setups, tree_rss_mb
from streamlit.proto.BackMsg_pb2 import BackMsg
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from served import CHROMIUM, CHROMIUM_ARGS, REPO, start_app, stop_app

ARTIFACTS = REPO / "artifacts"
CORPUS_TRAIN = REPO / "assets" / "wikitext-2" / "train.txt"
VIEWPORT = {"width": 1280, "height": 720}
MEMORY_TARGET_MB = 1536
LONG_WORDS = 20_000
STUDENT_PRESETS = ("tutorial", "per-channel")
STEPS = ("open", "generate", "speed", "fidelity", "fewer bits", "walkthrough")
WARNINGS = "[data-testid='stAlertContentWarning']"
APP_STATE = "document.querySelector(\"[data-testid='stApp']\")?.dataset.testScriptState"
# Idle: the script run is over and the status widget agrees (it shows its icon only after a short delay).
IDLE = f"() => {APP_STATE} === 'notRunning' && !document.querySelector(\"{RUNNING}\")"
BUSY = f"() => {APP_STATE} !== 'notRunning'"
POLL_MS = 250  # two cores run the server and every browser: poll the pages gently
CLEAR_CACHE = "clear_cache (raw websocket)"
ATTACKS = ("texts", "uploads", "walkthrough", "clear-cache", "evaluations", "sweeps")
CLEAR_EVERY_S = 30


# --- what the run records --------------------------------------------------------------------------------------

@dataclass
class Student:
    label: str
    link: dict[str, str]
    started: float = 0.0  # seconds since the server came up
    ended: float | None = None
    steps: dict[str, float] = field(default_factory=dict)  # until the page finished running
    shown: dict[str, float] = field(default_factory=dict)  # until the step's answer showed
    errors: list[str] = field(default_factory=list)
    marks: list[float] = field(default_factory=list)  # when answers showed (time.monotonic), see until_done

    def error(self, text: str) -> None:
        if text not in self.errors:  # an error stays on the page for the steps after it
            self.errors.append(text)


@dataclass
class Attack:
    name: str
    started: float
    seconds: float | None = None
    outcome: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    url: str
    timeout_ms: int
    t0: float = field(default_factory=time.monotonic)
    students: list[Student] = field(default_factory=list)
    attacks: list[Attack] = field(default_factory=list)
    hostile_browser_errors: list[str] = field(default_factory=list)
    students_done: asyncio.Event = field(default_factory=asyncio.Event)

    def clock(self) -> float:
        return time.monotonic() - self.t0


class MemorySampler(threading.Thread):
    """The server's process-tree memory once a second, and when (and how) the server exited if it did."""

    def __init__(self, server, t0: float):
        super().__init__(daemon=True)
        self.server, self.t0 = server, t0
        self.samples: list[tuple[float, float]] = []
        self.exit: tuple[float, int] | None = None
        self._halt = threading.Event()  # not ``_stop``: Thread has a method of that name

    def run(self) -> None:
        while not self._halt.is_set():
            code = self.server.poll()
            if code is not None:
                self.exit = (time.monotonic() - self.t0, code)
                return
            self.samples.append((time.monotonic() - self.t0, tree_rss_mb(self.server.pid)))
            self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --- crafted checkpoints -----------------------------------------------------------------------------------------

def lstm_shapes(ntoken: int, ninp: int, nhid: int, nlayers: int) -> dict[str, tuple[int, ...]]:
    """The model's state_dict keys and shapes; the LSTM's come from torch itself, on the meta device (no memory)."""
    with torch.device("meta"):
        rnn = torch.nn.LSTM(ninp, nhid, nlayers)
    shapes = {"encoder.weight": (ntoken, ninp)}
    shapes |= {f"rnn.{name}": tuple(tensor.shape) for name, tensor in rnn.state_dict().items()}
    return shapes | {"decoder.weight": (ntoken, nhid), "decoder.bias": (ntoken,)}


def parameters(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(torch.Size(shape).numel() for shape in shapes.values())


def craft_checkpoints(folder: Path) -> dict[str, Path]:
    """The three uploads, keyed by what the report calls them."""
    folder.mkdir(parents=True, exist_ok=True)
    huge = lstm_shapes(33_278, 2048, 2048, 5)
    # Zero strides: one stored float per tensor, so the file is a few KB, but a loader that makes the
    # tensors contiguous allocates all of them (about 1.2 GB of float32).
    strided = {k: torch.zeros(1).expand(shape) for k, shape in huge.items()}
    # The real vocabulary (so the corpus matches and every tab runs), a narrow model: the point is the dtype.
    integers = {k: torch.zeros(shape, dtype=torch.int64) for k, shape in lstm_shapes(33_278, 32, 32, 5).items()}
    # Under the 200 MB upload limit as float16, above a hosted server's default budget (twice the bundled model).
    wide = lstm_shapes(33_278, 1536, 256, 5)
    half = {k: (torch.rand(shape) * 0.2 - 0.1).half() for k, shape in wide.items()}
    files = {f"zero-stride {parameters(huge) / 1e6:.0f}M": (folder / "zero-stride.pth", strided),
             "int64": (folder / "int64.pth", integers),
             f"float16 {parameters(wide) / 1e6:.1f}M": (folder / "float16-wide.pth", half)}
    for path, state in files.values():
        torch.save(state, path)
    return {name: path for name, (path, _) in files.items()}


def long_text(words: int = LONG_WORDS) -> str:
    """Real words (the training split's), so the model reads them rather than <unk> after <unk>."""
    with open(CORPUS_TRAIN, encoding="utf-8") as f:
        found: list[str] = []
        for line in f:
            found.extend(line.split())
            if len(found) >= words:
                break
    return " ".join(found[:words])


# --- pages -------------------------------------------------------------------------------------------------------

async def new_page(browser, run: Run, errors: list[str], label: str):
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(run.timeout_ms)
    return context, await watched_page(context, errors, label)


async def watched_page(context, errors: list[str], label: str):
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{label}: browser error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"{label}: console: {msg.text[:300]}"))
    return page


def panel(page):
    """The tab panel on screen (hidden panels are left out of the accessibility tree)."""
    return page.get_by_role("tabpanel")


async def idle(page, timeout_ms: float) -> None:
    await page.wait_for_function(IDLE, polling=POLL_MS, timeout=max(1000.0, timeout_ms))


async def until_done(page, run: Run, expected, errors=None, marks: list[float] | None = None) -> None:
    """Until ``expected`` (or an error) shows and the script run is over, within one timeout for both.

    When it showed goes to ``marks`` (``time.monotonic``), kept even if the run then outlasts the timeout:
    the page goes on running the tabs drawn below the answer, and may queue there behind other visitors."""
    started = time.monotonic()
    shown = expected.or_(errors if errors is not None else panel(page).locator(ERRORS)).first
    await shown.wait_for(state="visible")
    if marks is not None:
        marks.append(time.monotonic())
    await idle(page, run.timeout_ms - 1000 * (time.monotonic() - started))


async def rerun_then_idle(page, timeout_ms: int) -> None:
    """After a change that sends a rerun: until the run has started (if it lasts long enough to see) and ended."""
    with contextlib.suppress(PlaywrightTimeout):
        await page.wait_for_function(BUSY, polling=100, timeout=10_000)
    await idle(page, timeout_ms)


async def shown_texts(page, selector: str) -> list[str]:
    found = page.locator(selector)
    return [" ".join((await found.nth(i).inner_text()).split())[:300] for i in range(await found.count())]


async def verdict(page) -> tuple[str, list[str]]:
    """What the app told the hostile visitor: refused (an error), warned, or nothing to say."""
    errors, warnings = await shown_texts(page, ERRORS), await shown_texts(page, WARNINGS)
    notes = [f"error: {e}" for e in errors] + [f"warning: {w}" for w in warnings]
    if errors:
        return "error shown: " + errors[0][:160], notes
    return "accepted" + (" with a warning" if warnings else ""), notes


async def server_up(url: str) -> bool:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
                return response.read() == b"ok"
        except OSError:
            return False

    return await asyncio.to_thread(check)


# --- a student -------------------------------------------------------------------------------------------------

def student_link(i: int) -> dict[str, str]:
    # Different presets and seeds, so that not every answer comes out of the cache.
    return {"preset": STUDENT_PRESETS[i % len(STUDENT_PRESETS)], "seed": str(i)}


async def open_app(page, run: Run, link: dict[str, str], marks: list[float] | None = None) -> None:
    await page.goto(f"{run.url}/?{urlencode(link)}")
    await until_done(page, run, panel(page).get_by_text("Takeaway:"), marks=marks)


async def press(page, run: Run, tab: str, button: str, expected, marks: list[float]) -> None:
    await page.get_by_role("tab", name=tab, exact=True).click()
    await page.get_by_role("button", name=button, exact=True).click()
    await until_done(page, run, expected, marks=marks)


async def walk_to_step_7(page, run: Run, marks: list[float]) -> None:
    await page.get_by_role("tab", name="Walkthrough", exact=True).click()
    for step in range(2, 8):
        await page.get_by_role("button", name="Next →", exact=True).click()
        await until_done(page, run, panel(page).get_by_text(f"Step {step} of 8"))
    await until_done(page, run, panel(page).get_by_text("Here: the first tokens of the test split"), marks=marks)


def student_steps(page, run: Run, student: Student) -> list[tuple[str, object]]:
    """Each step as (name, a coroutine function): what a student does, in the order the tabs come."""
    data, marks = "[data-testid='stDataFrame']", student.marks
    return [
        ("open", lambda: open_app(page, run, student.link, marks)),
        ("generate", lambda: press(page, run, "Generate", "Generate", panel(page).get_by_text("Takeaway:"), marks)),
        ("speed", lambda: press(page, run, "Speed & accuracy", "Run evaluation", panel(page).locator(data), marks)),
        ("fidelity", lambda: press(page, run, "Fidelity", "Compare outputs",
                                   panel(page).get_by_text("Same likeliest next word", exact=True), marks)),
        ("fewer bits", lambda: press(page, run, "Fewer bits", "Run the sweep", panel(page).locator(data), marks)),
        ("walkthrough", lambda: walk_to_step_7(page, run, marks)),
    ]


def step_error(name: str, exc: PlaywrightError, shown: float | None, timeout_s: int) -> str:
    if isinstance(exc, PlaywrightTimeout):
        if shown is not None:
            return f"{name}: the answer showed after {shown:.0f} s, but the page still ran at the {timeout_s} s limit"
        return f"{name}: no answer within {timeout_s} s"
    return f"{name}: {str(exc).splitlines()[0][:200]}"


async def student_session(browser, run: Run, student: Student) -> None:
    student.started = run.clock()
    seen: list[str] = []  # the browser's own errors, filled by the page's listeners
    context, page = await new_page(browser, run, seen, student.label)
    try:
        for name, action in student_steps(page, run, student):
            started = time.monotonic()
            student.marks.clear()
            try:
                await action()
            except PlaywrightError as exc:
                shown = student.marks[-1] - started if student.marks else None
                student.error(step_error(name, exc, shown, run.timeout_ms // 1000))
            if student.marks:
                student.shown[name] = student.marks[-1] - started
            student.steps[name] = time.monotonic() - started
            print(f"  [{run.clock():6.0f} s] {student.label}: {name} took {student.steps[name]:.0f} s", flush=True)
            for text in await shown_texts(page, ERRORS):
                student.error(f"{name}: page shows: {text}")
            if not await server_up(run.url):
                student.error(f"{name}: the server is down")
                break
    except asyncio.CancelledError:
        doing = STEPS[len(student.steps)] if len(student.steps) < len(STEPS) else "the last check"
        student.error(f"cut short at the deadline during '{doing}'")
        raise
    finally:
        for text in seen:
            student.error(text)
        student.ended = run.clock()
        with contextlib.suppress(PlaywrightError):
            await context.close()


async def students(browser, run: Run, count: int, stagger: float) -> None:
    run.students = [Student(f"student {i + 1}", student_link(i)) for i in range(count)]
    try:
        tasks = []
        for i, student in enumerate(run.students):
            if i:
                await asyncio.sleep(stagger)  # a class arrives over a minute or so, not in one millisecond
            tasks.append(asyncio.create_task(student_session(browser, run, student)))
        await asyncio.gather(*tasks)
    finally:
        run.students_done.set()


# --- the hostile visitor ---------------------------------------------------------------------------------------

async def attack(run: Run, name: str, action) -> None:
    """Run one attack, recording how long it took and what the app answered."""
    record = Attack(name, run.clock())
    run.attacks.append(record)
    try:
        record.outcome = await action(record) or "done"
    except PlaywrightTimeout:
        record.outcome = f"no answer within {run.timeout_ms // 1000} s"
    except (PlaywrightError, OSError) as exc:
        record.outcome = f"failed: {str(exc).splitlines()[0][:160]}"
    except asyncio.CancelledError:
        record.outcome = (f"{record.outcome}; " if record.outcome else "") + "cut short at the deadline"
        raise
    finally:
        record.seconds = run.clock() - record.started
    print(f"  [{record.started:6.0f} s] {name}: {record.outcome} ({record.seconds:.0f} s)", flush=True)


async def hostile_page(browser, run: Run):
    return await new_page(browser, run, run.hostile_browser_errors, "hostile")


async def long_texts(browser, run: Run, text: str) -> None:
    """Fidelity's text box and prompt, then Generate's prompt (and a generation from it), 20,000 words each."""
    context, page = await hostile_page(browser, run)
    try:
        await page.goto(f"{run.url}/?tab=fidelity")
        await until_done(page, run, panel(page).get_by_text("Takeaway:"))

        async def paste(record: Attack) -> str:
            box = page.get_by_label("Paste any text")
            await box.fill(text)
            await box.press("Control+Enter")  # a text area sends its value on Ctrl+Enter
            await rerun_then_idle(page, run.timeout_ms)
            outcome, record.notes = await verdict(page)
            return outcome

        async def fidelity_prompt(record: Attack) -> str:
            box = page.get_by_label("Prompt", exact=True)
            await box.fill(text)
            await box.press("Enter")
            await rerun_then_idle(page, run.timeout_ms)
            outcome, record.notes = await verdict(page)
            return outcome

        async def generate_prompt(record: Attack) -> str:
            await page.get_by_role("tab", name="Generate", exact=True).click()
            box = page.get_by_label("Prompt (optional)")
            await box.fill(text)
            await box.press("Enter")
            await rerun_then_idle(page, run.timeout_ms)
            await page.get_by_role("button", name="Generate", exact=True).click()
            await until_done(page, run, panel(page).get_by_text("Takeaway:"), page.locator(ERRORS))
            outcome, record.notes = await verdict(page)
            return outcome

        await attack(run, "20k-word text, Fidelity", paste)
        await attack(run, "20k-word prompt, Fidelity", fidelity_prompt)
        await attack(run, "20k-word prompt, Generate", generate_prompt)
    finally:
        await context.close()


async def upload(browser, run: Run, name: str, path: Path) -> None:
    """A fresh visitor picks "Upload a checkpoint" and sends ``path``."""
    context, page = await hostile_page(browser, run)

    async def send(record: Attack) -> str:
        await open_app(page, run, {})
        await page.locator("[data-testid='stSidebar']").get_by_text("Upload a checkpoint").click()
        chooser = page.locator("input[type=file]")
        await chooser.wait_for(state="attached")
        await chooser.set_input_files(path)
        loaded = panel(page).get_by_text(f"Source: upload {path.name}")
        await until_done(page, run, loaded, page.locator(ERRORS))
        outcome, record.notes = await verdict(page)
        return outcome if outcome.startswith("error") else "loaded: " + outcome

    try:
        await attack(run, f"upload {name} ({path.stat().st_size / 1e6:.2f} MB)", send)
    finally:
        await context.close()


async def whole_test_split(browser, run: Run) -> None:
    """The Walkthrough's step 7 with the select slider's last choice: every token of the test split."""
    context, page = await hostile_page(browser, run)

    async def choose_all(record: Attack) -> str:
        await page.goto(f"{run.url}/?step=7")
        await until_done(page, run, panel(page).get_by_text("Here: the first tokens of the test split"))
        slider = panel(page).locator("[data-testid='stSlider']").filter(has_text="Test tokens").get_by_role("slider")
        await slider.focus()
        await slider.press("End")  # the last of the select slider's choices
        await rerun_then_idle(page, run.timeout_ms)
        chosen = await slider.get_attribute("aria-valuetext") or await slider.get_attribute("aria-valuenow")
        outcome, record.notes = await verdict(page)
        record.notes.insert(0, f"slider now at {chosen}")
        return outcome

    try:
        await attack(run, "step 7 on the whole test split", choose_all)
    finally:
        await context.close()


async def send_clear_cache(url: str, times: int) -> None:
    """``clear_cache`` from a raw websocket, as a script would send it: no page, no button, no menu."""
    # The frontend names the "streamlit" subprotocol; the XSRF token it adds only guards auth cookies.
    stream = url.replace("http://", "ws://") + "/_stcore/stream"
    async with connect(stream, subprotocols=["streamlit"], open_timeout=30, close_timeout=30) as socket:
        for _ in range(times):
            await socket.send(BackMsg(clear_cache=True).SerializeToString())


async def clear_cache(run: Run, times: int = 3) -> None:
    """One record for the whole run: a connection every ``CLEAR_EVERY_S`` seconds until the students are done."""
    async def keep_sending(record: Attack) -> str:
        sent, failed = 0, 0
        while True:
            try:
                await send_clear_cache(run.url, times)
                sent += 1
            except (OSError, WebSocketException) as exc:  # a handshake timing out says the server is swamped
                failed += 1
                record.notes.append(f"{run.clock():.0f} s: {type(exc).__name__}: {str(exc)[:120]}")
            record.outcome = f"{times} messages on each of {sent} connections, {failed} failed"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.students_done.wait(), CLEAR_EVERY_S)
            if run.students_done.is_set():
                return record.outcome

    await attack(run, CLEAR_CACHE, keep_sending)


async def many_pages(browser, run: Run, name: str, links: list[dict[str, str]], button: str) -> None:
    """``len(links)`` pages of one visitor (one context) press ``button`` at the same moment."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(run.timeout_ms)
    pages = [await watched_page(context, run.hostile_browser_errors, "hostile") for _ in links]
    results = "[data-testid='stDataFrame']"

    async def ready(page, link):
        await page.goto(f"{run.url}/?{urlencode(link)}")
        await until_done(page, run, page.get_by_role("button", name=button, exact=True))

    async def finish(page, started: float) -> str:
        try:
            await until_done(page, run, panel(page).locator(results))
        except PlaywrightTimeout:
            return f"no answer within {run.timeout_ms // 1000} s"
        outcome, _ = await verdict(page)
        return f"{time.monotonic() - started:.0f} s, {outcome}"

    async def press_all(record: Attack) -> str:
        await asyncio.gather(*(ready(page, link) for page, link in zip(pages, links)))
        started = time.monotonic()
        await asyncio.gather(*(page.get_by_role("button", name=button, exact=True).click() for page in pages))
        answers = await asyncio.gather(*(finish(page, started) for page in pages))
        record.notes = [f"page {i + 1} ({urlencode(link)}): {a}" for i, (link, a) in enumerate(zip(links, answers))]
        finished = sum(a[0].isdigit() for a in answers)
        return f"{finished} of {len(pages)} answered, last after {time.monotonic() - started:.0f} s"

    try:
        await attack(run, name, press_all)
    finally:
        await context.close()


async def lane(run: Run, once) -> None:
    """Repeat an attack until every student is done (at least once)."""
    while True:
        await once()
        if run.students_done.is_set():
            return


async def uploads(browser, run: Run, files: dict[str, Path]) -> None:
    for name, path in files.items():
        await upload(browser, run, name, path)


async def hostile_visitor(browser, run: Run, files: dict[str, Path], text: str, chosen: list[str]) -> None:
    evaluations = [{**link, "tab": "speed-accuracy"} for link in setups()[:10]]  # ten distinct measurements
    sweeps = [{"tab": "fewer-bits", "seed": str(i)} for i in range(5)]
    lanes = {
        "texts": lambda: lane(run, lambda: long_texts(browser, run, text)),
        "uploads": lambda: lane(run, lambda: uploads(browser, run, files)),
        "walkthrough": lambda: lane(run, lambda: whole_test_split(browser, run)),
        "clear-cache": lambda: clear_cache(run),
        "evaluations": lambda: lane(run, lambda: many_pages(browser, run, "10 pages: Run evaluation", evaluations,
                                                            "Run evaluation")),
        "sweeps": lambda: lane(run, lambda: many_pages(browser, run, "5 pages: Run the sweep", sweeps,
                                                       "Run the sweep")),
    }
    await asyncio.gather(*(lanes[name]() for name in chosen))


# --- the run ---------------------------------------------------------------------------------------------------

async def drive(run: Run, files: dict[str, Path], text: str, args) -> None:
    deadline = run.t0 + 60 * args.minutes
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ordinary = asyncio.create_task(students(browser, run, args.ordinary, args.stagger))
            hostile = asyncio.create_task(hostile_visitor(browser, run, files, text, args.attacks))
            await asyncio.wait({ordinary}, timeout=max(0.0, deadline - time.monotonic()))
            # The hostile visitor finishes the attacks under way once the class is done, but not past the deadline.
            await asyncio.wait({hostile}, timeout=max(0.0, deadline - time.monotonic()))
            for task in (ordinary, hostile):
                task.cancel()
            await asyncio.gather(ordinary, hostile, return_exceptions=True)
        finally:
            await browser.close()


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"unknown ({os.cpu_count()} cores)"


def tracebacks(log_text: str) -> list[str]:
    """The last line of every traceback in the server's log: the exception and its message."""
    found, lines = [], log_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            rest = [x for x in lines[i + 1:] if x and not x.startswith((" ", "\t"))]
            found.append(rest[0][:300] if rest else "(a traceback with no exception line)")
    return found


def running_at(run: Run, since: float, t: float) -> tuple[int, list[str]]:
    """How many students were working at ``t``, and which attacks (but the ever-present clear_cache) were
    under way at some moment from ``since`` to ``t``."""
    working = sum(s.started <= t and (s.ended is None or t < s.ended) for s in run.students)
    attacks = [a.name for a in run.attacks
               if a.name != CLEAR_CACHE and a.started <= t and since <= a.started + (a.seconds or 0)]
    return working, sorted(set(attacks))


def memory_rows(run: Run, samples: list[tuple[float, float]], every: float) -> list[dict]:
    rows, since, next_at = [], 0.0, 0.0
    for t, mb in samples:
        if t >= next_at:
            working, attacks = running_at(run, since, t)
            rows.append({"t_s": round(t), "server_mb": round(mb), "students_working": working, "attacks": attacks})
            since, next_at = t, t + every
    return rows


def peak_during(samples: list[tuple[float, float]], record: Attack) -> int | None:
    # A second either side: a short attack may fall between two samples.
    end = record.started + (record.seconds or 0)
    return max((round(mb) for t, mb in samples if record.started - 1 <= t <= end + 1), default=None)


def summarise(run: Run, sampler: MemorySampler, log_path: Path, up: bool, args, server_start_s: float) -> dict:
    samples = sampler.samples or [(0.0, 0.0)]
    peak_t, peak_mb = max(samples, key=lambda s: s[1])
    students_view = []
    for s in run.students:
        slowest = max(s.steps.items(), key=lambda kv: kv[1], default=("-", 0.0))
        students_view.append({"label": s.label, "link": urlencode(s.link),
                              "steps_s": {k: round(v, 1) for k, v in s.steps.items()},
                              "shown_s": {k: round(v, 1) for k, v in s.shown.items()},
                              "finished": len(s.steps) == len(STEPS) and not s.errors,
                              "slowest_step": slowest[0], "slowest_s": round(slowest[1], 1), "errors": s.errors})
    logged = tracebacks(log_path.read_text(errors="replace"))
    died = {"at_s": round(sampler.exit[0]), "exit_code": sampler.exit[1]} if sampler.exit else None
    return {
        "cpu": cpu_name(), "ordinary_sessions": args.ordinary, "deadline_minutes": args.minutes,
        "attacks_chosen": args.attacks,
        "server_start_s": round(server_start_s, 1), "duration_s": round(run.clock()),
        "server": {"up_at_end": up, "died": died},
        "memory": {"peak_mb": round(peak_mb), "peak_at_s": round(peak_t), "first_mb": round(samples[0][1]),
                   "last_mb": round(samples[-1][1]), "table": memory_rows(run, samples, args.every),
                   "samples": [[round(t, 1), round(mb)] for t, mb in samples]},
        "students": students_view,
        "attacks": [{**asdict(a), "started": round(a.started), "seconds": round(a.seconds or 0),
                     "peak_mb_during": peak_during(samples, a)} for a in run.attacks],
        "hostile_browser_errors": len(run.hostile_browser_errors),
        "server_log_tracebacks": logged,
        "targets": {"server stays up": up and died is None,
                    "every student finishes without an error": all(s["finished"] for s in students_view),
                    f"server memory under {MEMORY_TARGET_MB} MB": peak_mb < MEMORY_TARGET_MB},
    }


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def step_cell(student: dict, step: str) -> str:
    if step not in student["steps_s"]:
        return "-"
    shown = student["shown_s"].get(step)
    return f"{'-' if shown is None else f'{shown:.0f}'} / {student['steps_s'][step]:.0f}"


def print_summary(summary: dict) -> None:
    print(f"\n## Hostile visitor: {summary['ordinary_sessions']} students and one attacker\n")
    print(f"CPU: {summary['cpu']}. Server up in {summary['server_start_s']} s; the run took "
          f"{summary['duration_s']} s (deadline {summary['deadline_minutes']} min).\n")
    print(f"Attacks: {', '.join(summary['attacks_chosen']) or 'none (a baseline)'}. "
          + (f"{CLEAR_CACHE} runs throughout, every {CLEAR_EVERY_S} s; " if "clear-cache" in summary["attacks_chosen"]
             else "") + "the column names the other attacks under way since the row before.\n")
    print("| t (s) | server memory (MB) | students working | attacks under way |\n|---:|---:|---:|---|")
    for row in summary["memory"]["table"]:
        print(f"| {row['t_s']} | {row['server_mb']} | {row['students_working']} | "
              f"{cell('; '.join(row['attacks'])) or '-'} |")
    memory = summary["memory"]
    print(f"\nPeak server memory: **{memory['peak_mb']} MB** at {memory['peak_at_s']} s "
          f"(first sample {memory['first_mb']} MB, last {memory['last_mb']} MB).\n")
    print("Each step: seconds until its answer showed / until the page finished running (the tabs below it too).\n")
    print("| student | link | " + " | ".join(STEPS) + " | slowest step | errors |")
    print("|---|---|" + "---:|" * len(STEPS) + "---|---:|")
    for s in summary["students"]:
        steps = " | ".join(step_cell(s, k) for k in STEPS)
        print(f"| {s['label']} | {cell(s['link'])} | {steps} | {s['slowest_step']} ({s['slowest_s']:.1f} s) | "
              f"{len(s['errors']) or ''} |")
    for s in summary["students"]:
        for error in s["errors"]:
            print(f"- {s['label']}: {cell(error)}")
    print("\n| attack | started (s) | seconds | server peak during (MB) | outcome |\n|---|---:|---:|---:|---|")
    for a in summary["attacks"]:
        peak = "-" if a["peak_mb_during"] is None else a["peak_mb_during"]
        print(f"| {cell(a['name'])} | {a['started']} | {a['seconds']} | {peak} | {cell(a['outcome'])} |")
    for a in summary["attacks"]:
        for note in a["notes"][:10]:
            print(f"- {cell(a['name'])} ({a['started']} s): {cell(note)}")
    logged = summary["server_log_tracebacks"]
    print(f"\nServer log: {len(logged)} traceback(s)." if logged else "\nServer log: no traceback.")
    for line in dict.fromkeys(logged):
        print(f"- {logged.count(line)}× {cell(line)}")
    died = summary["server"]["died"]
    print("\n| target | met |\n|---|---|")
    for target, met in summary["targets"].items():
        print(f"| {target} | {'yes' if met else '**no**'} |")
    if died:
        print(f"\nThe server exited at {died['at_s']} s with code {died['exit_code']}.")


def attack_list(raw: str) -> list[str]:
    chosen = [] if raw.strip() == "none" else [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in ATTACKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    return chosen


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ordinary", type=int, default=10, help="students working through the tabs")
    parser.add_argument("--minutes", type=float, default=20, help="deadline for the whole run, server start aside")
    parser.add_argument("--stagger", type=float, default=2.0, help="seconds between two students' arrivals")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one step or attack may wait")
    parser.add_argument("--every", type=float, default=10, help="seconds between rows of the memory table")
    parser.add_argument("--attacks", type=attack_list, default=list(ATTACKS),
                        help=f"comma-separated, of {', '.join(ATTACKS)} (default all); 'none' for a baseline")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="the checkout whose app is served (e.g. a `git archive` of another commit)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "hostile-streamlit.log"
    with tempfile.TemporaryDirectory(prefix="wlm-hostile-") as folder, open(log_path, "w") as log:
        files = craft_checkpoints(Path(folder))
        text = long_text()
        print("crafted uploads: " + ", ".join(f"{name} {path.stat().st_size / 1e6:.2f} MB"
                                              for name, path in files.items()), flush=True)
        launched = time.monotonic()
        # No file watcher, as on a deployed server: an edit to the checkout during the run would otherwise
        # reload the app's modules under the sessions (and cached objects then fail to pickle).
        env = {**os.environ, "WLM_HOSTED": "1", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
        server, url = start_app(env, output=log, timeout=180, repo=args.repo)
        server_start_s = time.monotonic() - launched
        run = Run(url=url, timeout_ms=int(args.timeout * 1000))
        sampler = MemorySampler(server, run.t0)
        sampler.start()
        print(f"server {url} up in {server_start_s:.1f} s (pid {server.pid}); attacks as they end:", flush=True)
        try:
            asyncio.run(drive(run, files, text, args))
        finally:
            try:
                up = server.poll() is None and asyncio.run(server_up(url))
                sampler.stop()
            finally:
                stop_app(server)
    summary = summarise(run, sampler, log_path, up, args, server_start_s)
    print_summary(summary)
    out = ARTIFACTS / "hostile.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"\nSummary written to {out.relative_to(REPO)}; server log in {log_path.relative_to(REPO)}.")


if __name__ == "__main__":
    main()
