"""How well the coupled sampler couples, and what it costs, on the bundled model.

    python bench/bench_sampler.py [--seeds 20] [--words 200] [--speed-words 1000]

Coupling, per preset at temperature 1: where the float and quantized texts first part over seeds 0..N-1
(median, min, max, and how many never part within --words), next to what an ideal coupling would give
from the same distributions: the mean total variation (TV) per step along the float text, its mean wait
1 / TV and median wait ln 2 / TV; and the first difference with the inverse-CDF sampler this one replaced.
Speed, 1 thread, CPU time: `generate`'s time per word against the bare forward step of the same model,
the tickets' time per step, and 1,000 int8 words headless. A benchmark, not a
test: pytest does not collect it and it asserts only that its shortcut matches `generate`.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

# Run as `python bench/bench_sampler.py` from the repository's root (or anywhere): the repository (wlm) goes on the
# path, after this folder.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

import wlm  # noqa: F401  (installs the warning filters)
from wlm.checkpoint import open_model
from wlm.generate import Tickets, _Reader, first_difference, generate, pick, same_pick_probability
from wlm.quantize import PRESETS, quantize


@torch.no_grad()
def float_run(model, ntoken: int, seed: int, words: int):
    """The float text's ids and, per step, the logits its words were drawn from, and that step's tickets."""
    tickets = Tickets(seed, ntoken)
    reader = _Reader(model, [tickets.start_word()])
    ids, logits, gumbels = [], [], []
    scratch = np.empty(ntoken, dtype=np.float32)
    for step in range(words):
        gumbel = tickets.draw().copy()
        ids.append(pick(reader.logits, gumbel, 1.0, scratch))
        logits.append(reader.logits.copy())
        gumbels.append(gumbel)
        if step + 1 < words:
            reader.read(ids[-1])
    start = Tickets(seed, ntoken).start_word()
    return start, ids, logits, gumbels


@torch.no_grad()
def variant_along(model, start: int, ids, logits, gumbels):
    """The variant reading the float text: its first differing pick (None if none) and 1 - TV per step.

    Until the texts part the variant reads exactly the words it wrote itself, so its first different pick
    here is where its own text parts from the float one."""
    reader, scratch, first, odds = _Reader(model, [start]), np.empty_like(logits[0]), None, []
    for step, word in enumerate(ids):
        odds.append(same_pick_probability(logits[step], reader.logits, 1.0))
        if first is None and pick(reader.logits, gumbels[step], 1.0, scratch) != word:
            first = step
        if step + 1 < len(ids):
            reader.read(word)
    return first, odds


@torch.no_grad()
def inverse_cdf_first_difference(model, variant, ntoken: int, seed: int, words: int) -> int:
    """The sampler this one replaced: one uniform number per step through the cumulative distribution in
    id order, from torch's generator. Both models step together until their picks differ."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.tensor([[int(torch.randint(ntoken, (1,), generator=generator))]])
    hidden = [m.init_hidden(1) for m in (model, variant)]
    for step in range(words):
        u = torch.rand((), generator=generator)
        picks = []
        for i, m in enumerate((model, variant)):
            logits, hidden[i] = m(x, hidden[i])
            probs = torch.softmax(logits[-1, 0].double(), -1)
            picks.append(min(int(torch.searchsorted(torch.cumsum(probs, 0), u * probs.sum())), ntoken - 1))
        if picks[0] != picks[1]:
            return step
        x = torch.tensor([[picks[0]]])
    return words


def coupling_table(loaded, seeds: int, words: int) -> list[dict]:
    model, dictionary = loaded.model, loaded.dictionary
    variants = {name: quantize(model, spec) for name, spec in PRESETS.items() if not spec.is_float}
    runs = [float_run(model, len(dictionary), seed, words) for seed in range(seeds)]
    rows = []
    for name, variant in variants.items():
        firsts, tvs = [], []
        for seed, (start, ids, logits, gumbels) in enumerate(runs):
            first, odds = variant_along(variant, start, ids, logits, gumbels)
            if seed == 0:  # the shortcut agrees with the public functions
                texts = [list(generate(m, dictionary, words=words, seed=0)) for m in (model, variant)]
                assert texts[0] == [dictionary.idx2word[i] for i in ids]
                assert first_difference(*texts) == first, (name, first_difference(*texts), first)
            firsts.append(words if first is None else first)
            tvs.append(1 - float(np.mean(odds)))
        tv = float(np.mean(tvs))
        before = [inverse_cdf_first_difference(model, variant, len(dictionary), seed, words) for seed in range(seeds)]
        rows.append({"variant": name, "median": statistics.median(firsts), "min": min(firsts), "max": max(firsts),
                     "never_parted": sum(f == words for f in firsts), "mean_tv": tv,
                     "before_median": statistics.median(before), "before_max": max(before),
                     "ideal_mean": 1 / tv if tv else math.inf, "ideal_median": math.log(2) / tv if tv else math.inf})
        print(f"{name}: {rows[-1]}", flush=True)
    return rows


@torch.no_grad()
def bare_steps(model, words: int) -> float:
    """CPU seconds per forward step alone: one word in, the logits out, nothing else."""
    hidden, x = model.init_hidden(1), torch.zeros((1, 1), dtype=torch.long)
    _, hidden = model(x, hidden)
    start = time.process_time()
    for i in range(words):
        x[0, 0] = i % 1000
        _, hidden = model(x, hidden)
    return (time.process_time() - start) / words


def cpu_seconds(run) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def speed_table(loaded, words: int, rounds: int = 5, chunk: int = 200) -> dict:
    """CPU time (one thread, so it is what this process used, whoever else shares the CPU), best of
    ``rounds``; bare step and ``generate`` alternate in chunks so both meet the same conditions."""
    dictionary = loaded.dictionary
    models = {"fp32": loaded.model, "tutorial": quantize(loaded.model, PRESETS["tutorial"])}
    best: dict = {}
    ratios: dict[str, list[float]] = {}
    tickets, scratch = Tickets(0, len(dictionary)), np.empty(len(dictionary), dtype=np.float32)
    logits = np.random.default_rng(0).standard_normal(len(dictionary)).astype(np.float32)

    def keep(key: str, value: float) -> None:
        best[key] = min(best.get(key, math.inf), value)

    for _ in range(rounds):
        for name, model in models.items():
            bare = bare_steps(model, chunk)
            per_word = cpu_seconds(lambda: list(generate(model, dictionary, words=chunk, seed=1))) / chunk
            keep(f"{name}: bare forward step (ms)", bare * 1e3)
            keep(f"{name}: generate per word (ms)", per_word * 1e3)
            ratios.setdefault(name, []).append(per_word / bare)
        keep("tickets per step (ms)", cpu_seconds(lambda: [tickets.draw() for _ in range(1000)]))
        gumbel = tickets.draw()
        keep("pick per step (ms)", cpu_seconds(lambda: [pick(logits, gumbel, 1.0, scratch) for _ in range(1000)]))
        keep(f"{words:,} int8 words, headless (s)",
             cpu_seconds(lambda: list(generate(models["tutorial"], dictionary, words=words, seed=2))))
    for name in models:
        best[f"{name}: generate / bare step, median of rounds"] = statistics.median(ratios[name])
        best[f"{name}: generate / bare step, best of each"] = (best[f"{name}: generate per word (ms)"]
                                                              / best[f"{name}: bare forward step (ms)"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--speed-words", type=int, default=1000)
    parser.add_argument("--skip-coupling", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = open_model(None)
    for key, value in speed_table(loaded, args.speed_words).items():
        print(f"| {key} | {value:.3f} |", flush=True)
    if args.skip_coupling:
        return
    rows = coupling_table(loaded, args.seeds, args.words)
    print(f"\n| variant | median | min | max | never parted in {args.words} | mean TV | ideal: 1 / TV | ideal median: "
          f"ln 2 / TV | inverse CDF (before): median, max |\n"
          f"|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['median']:g} | {r['min']} | {r['max']} | {r['never_parted']} / {args.seeds} | "
              f"{r['mean_tv']:.2g} | {r['ideal_mean']:,.0f} | {r['ideal_median']:,.0f} | {r['before_median']:g}, "
              f"{r['before_max']} |")


if __name__ == "__main__":
    main()
