"""Time the app as a class would meet it: `streamlit run` on 127.0.0.1, opened in Debian's Chromium.

    python bench/bench_app.py [--runs 2]

Reports, per run: server launch to health check, page open to the title and to the first drawn
chart (and its takeaway), page open to the end of the first script run, quantizing a new variant
(the embedding toggle) and an already cached one until the size takeaway is refreshed, 1,000
generated words in the browser, the server's resident memory with float and three variants cached,
and a second page's first chart on the now warm server; screenshots of the Model and Generate tabs
go to artifacts/browser/. A benchmark, not a test: pytest does not collect it and it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/bench_app.py` from the repository's root (or anywhere): the repository (wlm, ui) and the
# tests' shared helpers (served.py) go on the path, after this folder.
sys.path[1:1] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from playwright.sync_api import sync_playwright

from served import CHROMIUM, CHROMIUM_ARGS, REPO, start_app, stop_app

SHOTS = REPO / "artifacts" / "browser"  # ignored by git
CHART = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
FLOAT_EMBEDDING = "so it caps the saving"  # the size takeaway while the embedding stays float
QUANTIZED_EMBEDDING = "quantizing the embedding took it from"


def wait_until_idle(page) -> float:
    """Wait until the script run is over; returns when it ended (time.monotonic()).

    Streamlit shows a running icon while a run lasts (after a short delay), so the icon must stay
    away for a while before the run counts as finished."""
    running = "[data-testid='stStatusWidgetRunningIcon']"
    while True:
        page.wait_for_function(f"() => !document.querySelector(\"{running}\")")
        ended = time.monotonic()
        page.wait_for_timeout(800)
        if page.locator(running).count() == 0:
            return ended


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def one_run(env: dict) -> dict[str, float]:
    launched = time.monotonic()
    server, url = start_app(env)
    result = {"server up (s)": time.monotonic() - launched}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            opened = time.monotonic()
            page.goto(url)
            page.get_by_text("Dynamic quantization of an LSTM language model").first.wait_for()
            result["open -> title (s)"] = time.monotonic() - opened
            page.locator(CHART).first.wait_for()
            result["open -> first chart (s)"] = time.monotonic() - opened
            page.get_by_text(FLOAT_EMBEDDING).wait_for()
            result["open -> its takeaway (s)"] = time.monotonic() - opened
            result["launch -> first chart (s)"] = time.monotonic() - launched
            result["open -> first run done (s)"] = wait_until_idle(page) - opened
            sidebar = page.locator("[data-testid='stSidebar']")
            for name, text in (("new variant", QUANTIZED_EMBEDDING), ("cached variant", FLOAT_EMBEDDING)):
                clicked = time.monotonic()
                sidebar.get_by_text("Embedding", exact=True).click()
                page.get_by_text(text).wait_for()
                result[f"toggle, {name} -> size takeaway (s)"] = time.monotonic() - clicked
                wait_until_idle(page)
            sidebar.get_by_text("Per-channel (Linear, qint8)", exact=True).click()  # a third variant
            wait_until_idle(page)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "bench-model.png"), full_page=True)
            page.get_by_role("tab", name="Generate").click()
            page.get_by_label("Words").fill("1000")
            page.get_by_label("Words").press("Enter")
            wait_until_idle(page)
            clicked = time.monotonic()
            page.get_by_role("button", name="Generate", exact=True).click()
            takeaway = page.get_by_text("Written side by side")
            takeaway.wait_for()
            result["1,000 words from both models, click -> both shown (s)"] = time.monotonic() - clicked
            # The takeaway says how long each model wrote for (they write at the same time).
            took = re.search(r"float took ([\d.]+) s .*, (\S+) ([\d.]+) s \(", takeaway.inner_text())
            result["  float's 1,000 words (s)"] = float(took.group(1))
            result[f"  {took.group(2)} int8's 1,000 words (s)"] = float(took.group(3))
            wait_until_idle(page)
            page.screenshot(path=str(SHOTS / "bench-generate.png"), full_page=True)
            result["server memory, float + 3 variants (MB)"] = rss_mb(server.pid)
            # A second visitor on the same server: what a first page costs once the server is warm (the
            # figure a replica that deploy/serve warmed gives its first visitor).
            second = browser.new_page(viewport={"width": 1400, "height": 1000})
            second.set_default_timeout(120_000)
            opened = time.monotonic()
            second.goto(url)
            second.locator(CHART).first.wait_for()
            result["second page, warm server: open -> first chart (s)"] = time.monotonic() - opened
            wait_until_idle(second)
            browser.close()
    finally:
        stop_app(server)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        # Each run is a fresh server on a fresh clone: an empty cache, and the corpus found as a newcomer's would be.
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "WLM_CACHE_DIR": cache}
            env.pop("WLM_DATA_DIR", None)
            runs.append(one_run(env))
    print("| measure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |")
    print("|---|" + "---:|" * len(runs))
    for key in runs[0]:
        print(f"| {key} | " + " | ".join(f"{run[key]:.2f}" if "MB" not in key else f"{run[key]:.0f}"
                                         for run in runs) + " |")


if __name__ == "__main__":
    main()
