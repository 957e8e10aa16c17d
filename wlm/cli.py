"""``python -m wlm <command>``: results on stdout, progress and messages on stderr."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .errors import WlmError
from .threads import in_words


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _corpus(args, required: bool = True):
    from .corpus import Corpus, resolve_data_dir

    path = resolve_data_dir(args.data)
    if not required and not args.data and not path.is_dir():
        return None
    start = time.perf_counter()
    corpus = Corpus(path)
    _log(f"corpus: {corpus.label} ({len(corpus.dictionary):,} words, loaded in {time.perf_counter() - start:.2f} s)")
    if corpus.edited_splits:
        _log(f"note: {', '.join(corpus.edited_splits)} differ from the official Wikitext-2 files; "
             "figures will not match the README's")
    return corpus


def _model(args, corpus):
    from .checkpoint import open_model

    loaded = open_model(args.checkpoint, random_init=getattr(args, "random_init", False),
                        seed=getattr(args, "seed", 0), corpus=corpus)
    _log(f"model: {loaded.source}")
    return loaded


def _bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="tok", file=sys.stderr, dynamic_ncols=True, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


class _BarPerLabel:
    """A ``progress(label, done, total)`` callback that shows one bar per label, closing the previous one."""

    def __init__(self):
        self.bars: dict = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if label not in self.bars:
            self.close()
            self.bars[label] = _bar(label)
        self.bars[label][1](done, total)

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.close()


def _print_table(table, fmt: str) -> None:
    """csv and json keep the columns' code names (what scripts read); markdown, for people, their plain names."""
    from .benchmark import display_names

    if fmt == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif fmt == "json":
        print(json.dumps(table.to_dict(orient="records"), indent=2))
    else:
        print(display_names(table).to_markdown(index=False, floatfmt=".3f"))


def cmd_compare(args) -> None:
    from .benchmark import benchmark_variants, parse_variants
    from .onnx_engine import parse_engines, require_onnxruntime

    variants = parse_variants(args.variants)
    engines = parse_engines(args.engines)
    if "onnxruntime" in engines:
        require_onnxruntime()  # before the slow corpus load
    corpus = _corpus(args)
    loaded = _model(args, corpus)
    progress = _BarPerLabel()

    from .evaluate import limit_tokens

    _, note = limit_tokens(corpus.test, args.max_tokens)
    if note:
        _log(note)
    table = benchmark_variants(loaded.model, corpus.test, variants, max_tokens=args.max_tokens,
                             threads=args.threads, engines=engines, progress=progress)
    progress.close()
    _print_table(table, args.format)


def _variant_of(args):
    """The preset, corpus, float model and quantized variant a command works on."""
    from .quantize import preset, quantize

    spec = preset(args.variant)
    corpus = _corpus(args)
    loaded = _model(args, corpus)
    return spec, corpus, loaded, quantize(loaded.model, spec)


def _measured(desc: str, threads: int, run):
    """``run(progress)`` under a progress bar and the chosen thread count; its clamping note goes to stderr."""
    from .threads import num_threads

    bar, update = _bar(desc)
    with num_threads(threads):
        result = run(update)
    bar.close()
    if result.note:
        _log(result.note)
    return result


def cmd_evaluate(args) -> None:
    from .evaluate import evaluate
    from .sizes import state_dict_bytes

    spec, corpus, loaded, model = _variant_of(args)
    result = _measured(f"evaluate {args.variant}", args.threads, lambda update: evaluate(
        model, corpus.split(args.split), max_tokens=args.max_tokens, progress=update))
    row = {"variant": spec.label, "split": args.split, "size_mb": state_dict_bytes(model) / 1e6, **result.to_dict()}
    row.pop("note")
    print(json.dumps(row, indent=2) if args.format == "json" else
          "\n".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))


def _lines(words: list[str]) -> str:
    """Words joined by spaces, a line break for each end-of-line token."""
    from .corpus import EOS

    return "\n".join(" ".join(line.split()) for line in " ".join(words).split(EOS)).strip("\n")


def cmd_generate(args) -> None:
    from tqdm import tqdm

    from .generate import agreement, check_sampling, generate
    from .quantize import preset, quantize

    check_sampling(args.words, args.temperature)
    names = [args.variant, *([args.compare] if args.compare else [])]
    specs = [preset(name) for name in names]  # an unknown variant fails before the model loads
    # A bundle brings its vocabulary; a bare weights file needs the corpus it was trained on.
    needs_vocab = args.checkpoint is not None and not Path(args.checkpoint).is_dir()
    corpus = _corpus(args) if needs_vocab or args.data else None
    loaded = _model(args, corpus)
    _, unknown = loaded.dictionary.encode_prompt(args.prompt)
    if unknown:
        _log(f"not in the vocabulary, read as <unk>: {', '.join(unknown)}")
    kwargs = dict(temperature=args.temperature, seed=args.seed, prompt=args.prompt)
    models = [quantize(loaded.model, spec) for spec in specs]
    texts = [list(tqdm(generate(model, loaded.dictionary, words=args.words, **kwargs), total=args.words,
                       desc=f"generate {name}", unit="word", file=sys.stderr, leave=False))
             for name, model in zip(names, models)]
    if not args.compare:
        print(json.dumps({"variant": args.variant, "text": _lines(texts[0])}, indent=2)
              if args.format == "json" else _lines(texts[0]))
        return
    a, b = texts
    result = agreement(*models, loaded.dictionary, a, b, **kwargs)
    if args.format == "json":
        print(json.dumps({"variant": args.variant, "compare": args.compare, "text": _lines(a),
                          "compare_text": _lines(b), "first_difference": result.first_difference,
                          "agreed_words": result.agreed_words, "mean_same_pick": result.mean_same_pick,
                          "same_pick": result.same_pick}, indent=2))
        return
    for name, words in zip(names, texts):
        print(f"--- {name}\n{_lines(words)}\n")
    print("first difference: " + (f"none, the texts agree on all {result.agreed_words:,} words"
                                  if result.first_difference is None else
                                  f"the texts agree for {result.agreed_words:,} words, then part at word "
                                  f"{result.first_difference + 1:,}"))
    print(f"same-pick odds: at each step of the shared text the two models would pick the same word "
          f"{100 * result.mean_same_pick:.1f} % of the time")


def cmd_fidelity(args) -> None:
    from .benchmark import display_names
    from .fidelity import output_fidelity, weight_sqnr

    spec, corpus, loaded, quantized = _variant_of(args)
    result = _measured(f"fidelity {args.variant}", args.threads, lambda update: output_fidelity(
        loaded.model, quantized, corpus.test, max_tokens=args.max_tokens, progress=update))
    sqnr = weight_sqnr(loaded.model, quantized)
    if args.format == "json":
        print(json.dumps({"variant": spec.label, **result.summary(),
                          "sqnr": sqnr.to_dict(orient="records")}, indent=2, default=str))
        return
    print(f"variant: {spec.label}")
    for key, value in result.summary().items():
        print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    if len(sqnr):
        print()
        print(display_names(sqnr).to_markdown(index=False, floatfmt=".1f"))


def cmd_corpus(args) -> None:
    from .corpus import Corpus, reference_ids, resolve_data_dir

    path = resolve_data_dir(args.data)
    start = time.perf_counter()
    corpus = Corpus(path)
    ours = time.perf_counter() - start
    row = {"corpus": corpus.label, "path": str(path), "official_wikitext2": not corpus.edited_splits,
           "differs_from_official": corpus.edited_splits, "vocab": len(corpus.dictionary),
           "train_tokens": len(corpus.train), "valid_tokens": len(corpus.valid), "test_tokens": len(corpus.test),
           "load_seconds": round(ours, 3), "from_cache": corpus.from_cache}
    if args.reference:
        start = time.perf_counter()
        Corpus(path, cache=False)
        row["split_seconds"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        dictionary, splits = reference_ids(path)
        row["reference_loop_seconds"] = round(time.perf_counter() - start, 3)
        row["same_ids"] = dictionary == corpus.dictionary and all(
            a.equal(b) for a, b in zip(splits, (corpus.train, corpus.valid, corpus.test)))
    print(json.dumps(row, indent=2))


def cmd_download(args) -> None:
    from .download import download

    path = download(args.dest, force=args.force)
    print(path)


def cmd_train(args) -> None:
    from .threads import num_threads
    from .train import recipe_with, train

    overrides = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "bptt", "dropout", "lstm_init",
                                                "clip", "warmup_batches")}
    if args.bf16:
        overrides["bf16"] = True
    recipe = recipe_with(args.recipe, **overrides)
    corpus = _corpus(args)
    _log(f"recipe: {json.dumps(recipe.to_dict())}")
    with num_threads(args.threads):
        _, state = train(corpus.train, corpus.valid, len(corpus.dictionary), recipe, Path(args.out), seed=args.seed,
                         max_tokens=args.max_tokens, max_batches=args.probe, resume=args.resume,
                         time_limit_s=args.time_limit * 60 if args.time_limit else None, window=args.window, log=_log)
    print(json.dumps({"recipe": recipe.to_dict(), "step": state.step, "epochs_done": state.epoch,
                      "best_valid": None if math.isinf(state.best_valid) else state.best_valid,
                      "history": state.history, "windows": state.windows}, indent=2))


def cmd_bundle(args) -> None:
    from .bundle import write_bundle

    corpus = _corpus(args)
    card = write_bundle(Path(args.run), corpus, Path(args.out), threads=args.threads, log=_log)
    print(json.dumps(card, indent=2))


def _stages_text(result, scales, moved) -> str:
    from .dynamic_multiply import describe_layer

    s = result.summary()
    lines = [f"layer: {describe_layer(result.layer)} — {result.w_codes.shape[0]:,} outputs × {s['inputs']:,} inputs",
             f"input: {result.source}, word {result.word!r}",
             f"1. float activation: min {s['x_min']:.4f}, max {s['x_max']:.4f}",
             (f"2. run-time scale {s['x_scale']:.6g}, zero point {s['x_zero_point']} "
              f"(range {s['qmin']}-{s['qmax']}, fbgemm's reduce_range)")]
    if len(scales) > 1:
        lines += ["   each input gets its own scale:"] + [
            f"     {row.word!r} ({row.source}): scale {row.scale:.6g}, zero point {row.zero_point}"
            for row in scales.itertuples()]
    codes = ", ".join(str(int(c)) for c in result.x_codes[:12])
    scales_text = f"{s['w_scale_min']:.4g}" + (f" to {s['w_scale_max']:.4g}" if result.per_channel else "")
    per = "one scale per row" if result.per_channel else "one scale per tensor"
    lines += [f"3. activation as unsigned integers: {codes}, … "
              f"(largest rounding error {s['x_rounding_max_error']:.3g})",
              f"4. int8 weights, {per} ({scales_text})",
              result.weight_rows().to_markdown(index=False, floatfmt=".4g"),
              (f"5. int32 accumulation: largest |sum| {s['accumulator_max_abs']:,} ({s['int32_headroom']:.3%} of "
               "int32), then (sum − zero point × row sum) × activation scale × weight scale + bias"),
              f"6. against the float layer: SQNR {s['sqnr_db']:.1f} dB, largest error {s['output_max_abs_error']:.3g}"]
    if moved is not None:
        lines += ["   next-word probabilities that moved most:",
                  moved.to_markdown(index=False, floatfmt=".4g")]
    return "\n".join(lines)


def cmd_inspect(args) -> None:
    from .dynamic_multiply import dynamic_multiply, input_from_position, input_from_prompt, moved_scores, scales_of

    prompts = args.prompt or ([] if args.position is not None else ["the"])
    corpus = _corpus(args) if args.position is not None or args.data else None
    loaded = _model(args, corpus)
    model, dictionary = loaded.model, loaded.dictionary
    inputs = [input_from_prompt(model, dictionary, args.layer, p) for p in prompts]
    if args.position is not None:
        inputs.insert(0, input_from_position(model, dictionary, corpus.test, args.layer, args.position))
    result = dynamic_multiply(model, inputs[0], per_channel=args.per_channel)
    scales = scales_of(inputs)
    moved = moved_scores(result, dictionary, k=args.words) if result.layer == "decoder" else None
    if args.format == "json":
        print(json.dumps({**result.summary(), "x_codes": result.x_codes.tolist(),
                          "weight_rows": result.weight_rows().to_dict(orient="records"),
                          "scales": scales.to_dict(orient="records"),
                          "moved": None if moved is None else moved.to_dict(orient="records")}, indent=2))
    else:
        print(_stages_text(result, scales, moved))


def _bits_list(text: str) -> list[int]:
    from .low_bits import check_bits

    try:
        return [check_bits(int(b)) for b in text.split(",") if b.strip()]
    except ValueError:
        raise WlmError(f"--bits takes whole numbers separated by commas, e.g. 8,6,4,2; got {text!r}") from None


def _schemes_list(text: str) -> list[str]:
    from .low_bits import check_scheme

    schemes = [check_scheme(s.strip()) for s in text.split(",") if s.strip()]
    if not schemes:
        raise WlmError("--schemes needs at least one scheme, e.g. per-row,per-group")
    return schemes


def cmd_bits(args) -> None:
    from .low_bits import check_group_size, estimate_sweep_seconds, sweep, sweep_takeaway

    bits = _bits_list(args.bits)
    schemes = _schemes_list(args.schemes)
    group_size = check_group_size(args.group_size)
    corpus = _corpus(args)
    loaded = _model(args, corpus)
    estimate = estimate_sweep_seconds(loaded.model, corpus.test, bits=bits, schemes=schemes,
                                      max_tokens=args.max_tokens, embedding=args.embedding, threads=args.threads,
                                      group_size=group_size)
    _log(f"simulated: weights rounded to N bits, the model runs in float; {len(bits) * len(schemes) + 2} "
         f"evaluations, about {estimate:.0f} s on {in_words(args.threads)}")
    progress = _BarPerLabel()

    table = sweep(loaded.model, corpus.test, bits=bits, schemes=schemes, max_tokens=args.max_tokens,
                  embedding=args.embedding, threads=args.threads, progress=progress, group_size=group_size)
    progress.close()
    _print_table(table, args.format)
    _log(sweep_takeaway(table))


def cmd_sensitivity(args) -> None:
    from .low_bits import check_group_size
    from .sensitivity import (
        estimate_sensitivity_seconds,
        map_cells,
        measure,
        pick,
        readable_map,
        sensitivity,
        takeaway,
    )

    bits = _bits_list(args.bits)
    schemes = _schemes_list(args.schemes)
    group_size = check_group_size(args.group_size)
    if args.budget_mb is not None and not args.budget_mb > 0:
        raise WlmError(f"--budget-mb must be a positive number of MB, got {args.budget_mb:g}")
    corpus = _corpus(args)
    loaded = _model(args, corpus)
    options = dict(bits=bits, schemes=schemes, group_size=group_size, max_tokens=args.max_tokens,
                   threads=args.threads)
    cells = map_cells(loaded.model, bits=bits, schemes=schemes, group_size=group_size)
    estimate = estimate_sensitivity_seconds(loaded.model, corpus.test, **options)
    _log(f"{len(cells)} cells (each part alone: real int8, and {len(bits)} widths of {len(schemes)} simulated "
         f"schemes), about {estimate:.0f} s on {in_words(args.threads)}")
    progress = _BarPerLabel()
    table = sensitivity(loaded.model, corpus.test, progress=progress, **options)
    progress.close()
    mix = None
    if args.budget_mb is not None:
        chosen = pick(loaded.model, table, args.budget_mb)
        mix = measure(loaded.model, chosen, corpus.test, max_tokens=args.max_tokens, threads=args.threads)
    if args.format == "json":
        print(json.dumps({"rows": table.to_dict(orient="records"), **({"mix": mix.to_dict()} if mix else {})},
                         indent=2))
    elif args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    else:
        print(readable_map(table).to_markdown(index=False))
    _log(takeaway(table))
    if mix is not None:
        _log(mix_line(mix, args.budget_mb))


def mix_line(mix, budget_mb: float) -> str:
    return (f"mix within {budget_mb:g} MB: {mix.describe()}; {mix.size_mb:.1f} MB, Δ loss {mix.delta_loss:+.4f} "
            f"nats measured ({mix.predicted_delta_loss:+.4f} predicted by adding the parts')")


def _static_markdown(table) -> str:
    from .static_quant import readable_rows

    return readable_rows(table).to_markdown(index=False, disable_numparse=True)


def cmd_static(args) -> None:
    from .static_quant import (
        check_rounds,
        check_tokens,
        estimate_seconds,
        notice,
        parse_observers,
        parse_sizes,
        point_column_names,
        sizes_takeaway,
        study,
        text_takeaway,
        variants_takeaway,
    )

    # every parameter is checked before the corpus and the model load
    check_tokens(args.max_tokens, "the test tokens", "--max-tokens")
    check_tokens(args.calibration_tokens, "the calibration tokens", "--calibration-tokens")
    sizes, observers, rounds = parse_sizes(args.sizes), parse_observers(args.observers), check_rounds(args.rounds)
    corpus = _corpus(args)
    loaded = _model(args, corpus)
    options = dict(max_tokens=args.max_tokens, calibration_tokens=args.calibration_tokens, sizes=sizes,
                   observers=observers, threads=args.threads)
    estimate = sum(estimate_seconds(loaded.model, corpus.test, corpus.train, **options).values())
    longest = max(sizes + [args.calibration_tokens])
    _log(f"static or dynamic: {args.max_tokens:,} test tokens, calibration on up to {longest:,} training tokens; "
         "the static LSTM rows are simulated (fake-quantized), the decoder-only rows run on torch's real static "
         f"kernels; about {estimate:.0f} s on {in_words(args.threads)}")
    progress = _BarPerLabel()
    found = study(loaded.model, corpus.test, corpus.train, rounds=rounds, progress=progress, **options)
    progress.close()
    for note in found.notes:
        _log(note)
    if args.format != "md":
        table = found.points if args.ranges else found.rows
        _print_table(table, args.format)
    elif args.ranges:
        print(found.points.rename(columns=point_column_names(found.observers)).to_markdown(index=False, floatfmt=".4g"))
    else:
        titles = {"variants": f"Static or dynamic on {found.tokens:,} test tokens (calibrated on "
                              f"{found.calibration_tokens:,} training tokens)",
                  "calibration size": "Loss against calibration size (training tokens)",
                  "calibration text": "Calibrated on the training text or on the test tokens themselves"}
        print("\n\n".join(f"**{titles[name]}**\n\n{_static_markdown(found.table(name))}" for name in titles))
    for line in [variants_takeaway(found), sizes_takeaway(found), text_takeaway(found), *notice(found)]:
        _log(line)


def cmd_notebook(args) -> None:
    from .assets import ASSETS_DIR
    from .notebook import check_assets, write_walkthrough

    assets = check_assets(Path(args.assets) if args.assets else ASSETS_DIR)
    for path in write_walkthrough(args.out, assets, seed=args.seed, tokens=args.tokens):
        print(path)
    _log(f"the first cell reads the model and the corpus from {assets} (ASSETS; change it there)")


def cmd_export(args) -> None:
    from .onnx_engine import require_onnxruntime
    from .onnx_export import check_engine, check_variant, export_names, write_export
    from .out_files import prepare_folder

    check_engine(args.engine)
    check_variant(args.variant)
    require_onnxruntime()  # these, and the folder, before the model loads
    prepare_folder(args.out, names=export_names(args.variant))
    needs_vocab = args.checkpoint is not None and not Path(args.checkpoint).is_dir()
    corpus = _corpus(args) if needs_vocab or args.data else None
    loaded = _model(args, corpus)
    _log(f"exporting to ONNX ({args.variant}; the export is cached in $WLM_CACHE_DIR, default ~/.cache/wlm)")
    for path in write_export(loaded.model, loaded.dictionary, args.out, args.variant):
        print(path)


def cmd_speedup(args) -> None:
    from tqdm import tqdm

    from .qengine import parse_engines
    from .speedup import (
        SPEEDUP_NAMES,
        check_batches,
        cpu_info,
        notes,
        parse_batches,
        parts_takeaway,
        speedup_takeaway,
        when_int8_pays,
    )

    engines = parse_engines(args.engines)  # the parameters fail here, before the slow loads
    batches = check_batches(parse_batches(args.batches), args.max_tokens)
    if args.parts and args.format == "csv":
        raise WlmError("--parts prints a second table, which a CSV file cannot hold; use --format md or json")
    corpus = _corpus(args)
    loaded = _model(args, corpus)
    cpu = cpu_info()
    _log(f"cpu: {cpu.describe()}; engines {', '.join(engines)}")
    bar = tqdm(total=0, desc="speedup", unit="walk", file=sys.stderr, dynamic_ncols=True, leave=False)

    def progress(label: str, done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.set_description(label)

    result = when_int8_pays(loaded.model, corpus.test, engines=engines, batches=batches, max_tokens=args.max_tokens,
                            threads=args.threads, parts=args.parts, progress=progress, cpu=cpu)
    bar.close()
    if result.note:
        _log(result.note)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return
    if args.format == "csv":
        sys.stdout.write(result.table.assign(cpu=cpu.name).to_csv(index=False))
        _log(speedup_takeaway(result.table))
        return
    print(f"CPU: {cpu.describe()}\n{result.setting()}\n")
    print(result.table.rename(columns=SPEEDUP_NAMES).to_markdown(index=False, floatfmt=("", "", ",.0f", ",.0f", ".2f")))
    print(f"\n{speedup_takeaway(result.table)}\n")
    print("\n".join(f"- {note}" for note in notes(result.table, cpu)))
    if result.parts is not None:
        parts = result.parts.drop(columns="seconds").rename(columns=SPEEDUP_NAMES)
        print(f"\nper part, {result.parts['engine'].iloc[0]}:\n")
        print(parts.to_markdown(index=False, floatfmt=".1f"))
        print(f"\n{parts_takeaway(result.parts)}")


def build_parser(prog: str = "python -m wlm") -> argparse.ArgumentParser:
    from .assets import MODEL_FOLDER
    from .corpus import DEFAULT_DATA_DIR
    from .dynamic_multiply import MOVED_WORDS
    from .lessons import LESSON_TOKENS
    from .low_bits import DEFAULT_BITS_TOKENS, DEFAULT_GROUP_SIZE, SCHEMES, SWEEP_BITS, SWEEP_SCHEMES
    from .quantize import PRESETS
    from .sensitivity import DEFAULT_SENSITIVITY_TOKENS
    from .static_quant import CALIBRATION_SIZES, DEFAULT_CALIBRATION_TOKENS, DEFAULT_STATIC_TOKENS, OBSERVERS
    from .train import DEFAULT_RECIPE, EXAMPLES_RECIPE, LOSS_WINDOW, LSTM_INITS, RECIPE_ALIASES, RECIPES, TRAIN_SEED

    parser = argparse.ArgumentParser(prog=prog, description=(
        "Dynamic quantization of the PyTorch tutorial's LSTM word language model."))
    sub = parser.add_subparsers(dest="command", required=True)

    def add_data(p):
        p.add_argument("--data", help="corpus folder with train/valid/test.txt (default: $WLM_DATA_DIR, "
                                      "then ./data/wikitext-2, then the bundled copy in assets/wikitext-2)")

    def add_model(p):
        p.add_argument("--checkpoint",
                       help="bundle folder, .safetensors or the tutorial's .pth (default: bundled model)")

    def add_threads(p, default=1):
        p.add_argument("--threads", type=_positive_int, default=default, help=f"torch threads (default {default})")

    def add_schemes(p):
        p.add_argument("--schemes", default=",".join(SWEEP_SCHEMES),
                       help=f"comma-separated, from: {', '.join(SCHEMES)} (default {','.join(SWEEP_SCHEMES)})")
        p.add_argument("--group-size", type=_positive_int, default=DEFAULT_GROUP_SIZE,
                       help=f"weights per scale for the per-group schemes (default {DEFAULT_GROUP_SIZE})")

    variants = ", ".join(PRESETS)
    p = sub.add_parser("compare", help="the tutorial's table: size, loss, speed of fp32 and quantized variants")
    add_data(p), add_model(p), add_threads(p)
    p.add_argument("--random-init", action="store_true", help="tutorial architecture with random weights")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    p.add_argument("--variants", default="tutorial", help=f"comma-separated, or 'all' (from: {variants})")
    p.add_argument("--engines", default="torch", help="comma-separated: torch, onnxruntime (ONNX Runtime's fp32 "
                                                        "and int8 rows; the export is cached in $WLM_CACHE_DIR, "
                                                        "default ~/.cache/wlm)")
    p.add_argument("--max-tokens", type=int, help="evaluate this many test tokens (default: the whole split)")
    p.add_argument("--format", choices=["md", "csv", "json"], default="md")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate", help="loss and speed of one variant, the tutorial's way")
    add_data(p), add_model(p), add_threads(p)
    p.add_argument("--variant", default="fp32", help=f"one of: {variants}")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("generate", help="sample text")
    add_data(p), add_model(p)
    p.add_argument("--variant", default="fp32", help=f"one of: {variants}")
    p.add_argument("--words", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = always the most likely word")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", help="words to start from")
    p.add_argument("--compare", metavar="VARIANT", help=f"also write with this variant from the same seed and "
                                                         f"show where the texts part (one of: {variants})")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("fidelity", help="KL divergence, top-1 agreement and weight SQNR of a variant vs fp32")
    add_data(p), add_model(p), add_threads(p, default=2)
    p.add_argument("--variant", default="tutorial", help=f"one of: {variants}")
    p.add_argument("--max-tokens", type=int, default=5000)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_fidelity)

    p = sub.add_parser("corpus", help="corpus statistics and load time")
    add_data(p)
    p.add_argument("--reference", action="store_true",
                   help="also time splitting the text without the cache and the tutorial's plain loop, "
                        "and check the ids match")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("download", help="fetch Wikitext-2 into ./data/wikitext-2")
    p.add_argument("--dest", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("train", help="train the tutorial's architecture")
    add_data(p), add_threads(p, default=2)
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=[*RECIPES, *RECIPE_ALIASES],
                   help=f"{DEFAULT_RECIPE} (the default) or {EXAMPLES_RECIPE}, the seed's: pytorch/examples' "
                        f"word_language_model recipe ({', '.join(RECIPE_ALIASES)} is another name for it)")
    p.add_argument("--out", default="runs/train", help="run folder: best.pt, resume.pt")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--bptt", type=_positive_int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--clip", type=float)
    p.add_argument("--warmup-batches", type=int)
    p.add_argument("--lstm-init", choices=list(LSTM_INITS))
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--max-tokens", type=int, help="train on this many tokens of the train split")
    p.add_argument("--probe", type=_positive_int, metavar="BATCHES", help="stop after this many batches")
    p.add_argument("--window", type=_positive_int, default=LOSS_WINDOW,
                   help="report the mean loss of each window of batches")
    p.add_argument("--time-limit", type=float, metavar="MINUTES", help="stop (and save) after this long")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    p.add_argument("--seed", type=int, default=TRAIN_SEED)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bundle", help="evaluate a training run's best model and write a model bundle")
    add_data(p), add_threads(p)
    p.add_argument("--run", required=True, help="run folder written by `train`")
    p.add_argument("--out", default=f"assets/{MODEL_FOLDER}")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("inspect", help="every stage of one dynamic quantized multiply, on a real input")
    add_data(p), add_model(p)
    p.add_argument("--layer", default="decoder", help="decoder, or rnn.weight_ih_lK / rnn.weight_hh_lK (K = 0..4)")
    p.add_argument("--prompt", action="append", help="the input is what arrives while reading the prompt's last "
                                                     "word (default 'the'); repeat to compare run-time scales")
    p.add_argument("--position", type=int, help="instead, the input at this test-split position (needs the corpus)")
    p.add_argument("--per-channel", action="store_true", help="one weight scale per row instead of per tensor")
    p.add_argument("--words", type=_positive_int, default=MOVED_WORDS,
                   help="decoder: next words that moved most to show")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("bits", help="loss with weights rounded to 8...2 bits, per tensor and per row (simulated)")
    add_data(p), add_model(p), add_threads(p)
    p.add_argument("--bits", default=",".join(map(str, SWEEP_BITS)),
                   help=f"comma-separated widths from {min(SWEEP_BITS)} to {max(SWEEP_BITS)}")
    add_schemes(p)
    p.add_argument("--embedding", action="store_true", help="round the embedding too")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_BITS_TOKENS,
                   help=f"test tokens (default {DEFAULT_BITS_TOKENS:,})")
    p.add_argument("--format", choices=["md", "csv", "json"], default="md")
    p.set_defaults(func=cmd_bits)

    p = sub.add_parser("sensitivity", help="each part (embedding, each LSTM layer, decoder) quantized alone: real "
                                           "int8 and simulated widths; optionally a mix of bits per part under a "
                                           "size budget")
    add_data(p), add_model(p), add_threads(p)
    p.add_argument("--bits", default=",".join(map(str, SWEEP_BITS)),
                   help=f"comma-separated simulated widths from {min(SWEEP_BITS)} to {max(SWEEP_BITS)}")
    add_schemes(p)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_SENSITIVITY_TOKENS,
                   help=f"test tokens (default {DEFAULT_SENSITIVITY_TOKENS:,})")
    p.add_argument("--budget-mb", type=float, help="pick bits per part so the stored model fits in this many MB, "
                                                   "and measure the pick")
    p.add_argument("--format", choices=["md", "csv", "json"], default="md")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("static", help="static against dynamic activation scales: calibrated fixed ranges "
                                      "(simulated for the LSTM, real kernels for the decoder) against run-time ones")
    add_data(p), add_model(p), add_threads(p)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_STATIC_TOKENS,
                   help=f"test tokens scored (default {DEFAULT_STATIC_TOKENS:,})")
    p.add_argument("--calibration-tokens", type=int, default=DEFAULT_CALIBRATION_TOKENS,
                   help=f"training tokens the static rows are calibrated on (default {DEFAULT_CALIBRATION_TOKENS:,})")
    p.add_argument("--sizes", default=",".join(map(str, CALIBRATION_SIZES)),
                   help="calibration sizes for the loss-against-calibration-size rows (comma-separated)")
    p.add_argument("--observers", default=",".join(OBSERVERS), help=f"comma-separated: {', '.join(OBSERVERS)}")
    p.add_argument("--rounds", type=int, default=1, help="time the real-kernel rows this many times, interleaved, "
                                                         "and keep each one's fastest (default 1)")
    p.add_argument("--ranges", action="store_true",
                   help="print the per-point table (calibrated ranges against run-time ones) instead of the rows")
    p.add_argument("--format", choices=["md", "csv", "json"], default="md")
    p.set_defaults(func=cmd_static)

    p = sub.add_parser("notebook", help="the walkthrough as a Jupyter notebook and a plain Python script")
    p.add_argument("--out", required=True, help="folder to write wlm-walkthrough.ipynb and wlm-walkthrough.py "
                                                "into (created if missing)")
    p.add_argument("--assets", help="folder holding wlm-lstm/ and wikitext-2/ that the first cell reads "
                                    "(default: the bundled ones, the repository's assets/)")
    p.add_argument("--seed", type=int, default=0, help="the seed step 4 writes from (default 0, as the app)")
    p.add_argument("--tokens", type=_positive_int, default=LESSON_TOKENS,
                   help=f"test tokens step 7 evaluates (default {LESSON_TOKENS:,})")
    p.set_defaults(func=cmd_notebook)

    p = sub.add_parser("export", help="the model as files any ONNX Runtime runs: .onnx, vocabulary, README")
    add_data(p), add_model(p)
    p.add_argument("--engine", default="onnxruntime", help="the runtime to export for: onnxruntime (the only one)")
    p.add_argument("--variant", default="int8", help="int8 (ONNX Runtime's quantize_dynamic, the default) or fp32")
    p.add_argument("--out", required=True, help="folder to write the model, vocab.txt and README.md into "
                                                "(created if missing)")
    p.set_defaults(func=cmd_export)

    from .qengine import available_engines
    from .speedup import DEFAULT_BATCHES, DEFAULT_TOKENS

    p = sub.add_parser("speedup", help="when int8 pays: float and int8 tokens/s against batch size, per quantized "
                                       "engine, on this CPU")
    add_data(p), add_model(p), add_threads(p)
    p.add_argument("--engines", help="comma-separated quantized engines (default: every one this CPU offers: "
                                     f"{', '.join(available_engines())})")
    p.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)),
                   help="comma-separated batch sizes, each at least 1 (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_TOKENS,
                   help=f"test tokens every measurement reads (default {DEFAULT_TOKENS:,})")
    p.add_argument("--parts", action="store_true",
                   help="also the time of the embedding, LSTM and decoder at the smallest and largest batch")
    p.add_argument("--format", choices=["md", "csv", "json"], default="md")
    p.set_defaults(func=cmd_speedup)
    return parser


def main(argv: list[str] | None = None) -> int:
    import wlm  # noqa: F401  (installs the warning filters)

    # Installed, the command is `wlm`; from a clone, `python -m wlm`: help and errors name the one typed.
    parser = build_parser("wlm" if Path(sys.argv[0]).name == "wlm" else "python -m wlm")
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except WlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
