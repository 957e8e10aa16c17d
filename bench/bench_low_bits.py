"""Time the bits sweep (8...2 bits, per-tensor and per-row, plus float and the real int8 variant) on one thread.

    WLM_DATA_DIR=../shared/wikitext-2 python bench/bench_low_bits.py [--tokens 2000] [--threads 1]

Prints the probe's estimate, the measured time and the loss table (markdown). A benchmark, not a
test: pytest does not collect it and it asserts nothing.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

# Run as `python bench/bench_low_bits.py` from the repository's root (or anywhere): the repository (wlm) goes on the
# path, after this folder.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import wlm  # noqa: F401  (warning filters)
from wlm.checkpoint import load_model
from wlm.corpus import Corpus
from wlm.low_bits import DEFAULT_BITS_TOKENS, estimate_sweep_seconds, sweep, sweep_takeaway


def cpu_name() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=DEFAULT_BITS_TOKENS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    corpus = Corpus()
    model = load_model().model
    estimate = estimate_sweep_seconds(model, corpus.test, max_tokens=args.tokens, threads=args.threads)
    start = time.perf_counter()
    table = sweep(model, corpus.test, max_tokens=args.tokens, threads=args.threads)
    seconds = time.perf_counter() - start
    print(f"CPU: {cpu_name()}, {args.threads} thread(s), {args.tokens:,} test tokens")
    print(f"estimated {estimate:.1f} s, measured {seconds:.1f} s")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print(sweep_takeaway(table))


if __name__ == "__main__":
    main()
