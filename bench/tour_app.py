"""A class's whole tour, measured: `streamlit run` on the bundled model and corpus, every tab opened in Chromium and
every button that draws a chart pressed (as tests/test_browser_tabs.py does), then the server's resident memory.

    python bench/tour_app.py [--phone]

Screenshots of every tab and Walkthrough card go to artifacts/tour-1280/ (or artifacts/tour-390/ with --phone, a
390×844 window). Prints the CPU, the time to the first chart, the tour's length and the server's memory after it.
A benchmark, not a test: pytest does not collect it and it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# Run as `python bench/tour_app.py` from the repository's root: the repository and the tests' helpers on the path.
sys.path[1:1] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from test_browser_tabs import BUTTONS, tour

from served import REPO, start_app, stop_app

PHONE, PROJECTOR = {"width": 390, "height": 844}, {"width": 1280, "height": 720}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phone", action="store_true", help="a 390x844 window instead of 1280x720")
    args = parser.parse_args()
    viewport = PHONE if args.phone else PROJECTOR
    shots = REPO / "artifacts" / f"tour-{viewport['width']}"
    server, url = start_app(dict(os.environ))
    try:
        started = time.monotonic()
        heights = tour(url, shots, BUTTONS, viewport)
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
        print(f"tour of {len(heights)} tabs at {viewport['width']}x{viewport['height']}: "
              f"{time.monotonic() - started:.0f} s; charts per tab: { {k: len(v) for k, v in heights.items()} }")
        print(f"server memory after the tour: {rss_mb(server.pid):,.0f} MB")
        print(f"screenshots: {shots}")
    finally:
        stop_app(server)


if __name__ == "__main__":
    main()
