"""Time the decoder alone, one 25-token chunk at a time: float, the tutorial's dynamic int8 Linear, and torch's real
static int8 Linear (eager mode, calibrated with the min-max and histogram observers on the first training tokens).

    python bench/bench_static_decoder.py [--calls 40] [--rounds 5] [--calibration-tokens 5000]

Prints milliseconds per chunk, best of the interleaved rounds. A benchmark, not a test: pytest does not collect it
and it asserts nothing. (The whole-model rows of ``python -m wlm static`` time the decoder with the rest of the
model; alone, the difference between the two int8 decoders is not drowned by the LSTM's time.)
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import wlm  # noqa: E402,F401  (warning filters)
from wlm.checkpoint import load_model  # noqa: E402
from wlm.corpus import Corpus, resolve_data_dir  # noqa: E402
from wlm.quantize import preset, quantize  # noqa: E402
from wlm.static_quant import OBSERVERS, calibrate, convert_static_decoder, prepare_static_decoder  # noqa: E402


def cpu_name() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calibration-tokens", type=int, default=5_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(None).model
    corpus = Corpus(resolve_data_dir(None))
    decoders = {o: prepare_static_decoder(model, o) for o in OBSERVERS}

    def feed(block: torch.Tensor) -> None:
        for decoder in decoders.values():
            decoder(block)

    calibrate(model, corpus.train, [args.calibration_tokens], decoder_feed=(args.calibration_tokens, feed))
    modules = {"float": model.decoder, "dynamic": quantize(model, preset("tutorial")).decoder,
               **{f"static {o}": convert_static_decoder(d) for o, d in decoders.items()}}
    with torch.no_grad():
        chunk, _ = model.rnn(model.encoder(corpus.test[:25].view(-1, 1)), model.init_hidden(1))  # a real input
        best = {name: float("inf") for name in modules}
        for _ in range(args.rounds):
            for name, module in modules.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    module(chunk)
                best[name] = min(best[name], (time.perf_counter() - start) / args.calls)
    print(f"{cpu_name()}, torch {torch.__version__}, 1 thread; decoder 256 -> {model.decoder.out_features:,}, one "
          f"chunk of 25 tokens, best of {args.rounds} rounds of {args.calls} calls\n")
    print("| decoder | ms per chunk | against dynamic |\n|---|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {1e3 * seconds:.2f} | {seconds / best['dynamic']:.2f}× |")


if __name__ == "__main__":
    main()
