"""Size, loss and speed of float and quantized variants: the tutorial's table, and the thread sweep.

With more than one engine the table's rows gain an ``engine`` column: PyTorch's variants, then ONNX
Runtime's float export and its int8 ``quantize_dynamic`` model, all on the same tokens with the same
thread count.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .evaluate import evaluate
from .model import LSTMModel
from .onnx_engine import ORT_VARIANTS, onnx_model, parse_engines
from .quantize import PRESETS, QuantSpec, preset, quantize
from .sizes import state_dict_bytes
from .threads import num_threads

COLUMNS = ["variant", "size_mb", "loss", "ppl", "seconds", "tokens_per_s", "speedup"]
ENGINE_COLUMNS = ["variant", "engine", *COLUMNS[1:]]  # when the table holds more than PyTorch's rows

# The one plain name each measured column is shown under: the app's tables and chart axes (through
# ``ui.glossary``) and the CLI's markdown tables. The data keeps its code names (DataFrame columns, the JSON
# and CSV keys), so code and scripts that read them never change with the wording.
COLUMN_NAMES = {
    "variant": "variant",
    "engine": "engine",
    "size_mb": "size (MB)",
    "loss": "loss",
    "ppl": "perplexity",
    "perplexity": "perplexity",
    "seconds": "seconds",
    "tokens_per_s": "tokens/s",
    "speedup": "speedup",
    "delta_loss": "Δ loss",
    "threads": "threads",
    "tokens": "predictions",  # an evaluation of N tokens scores N - 1 next-word predictions
    "scheme": "scheme",
    "bits": "bits",
    "part": "part",
    "weight": "weight",
    "layer": "layer",
    "gate": "gate",
    "sqnr_db": "SQNR (dB)",
    "group_size": "group size",
    "bits_per_weight": "bits per weight",
    "kl_mean": "mean KL (nats)",
    "top1_agreement": "top-1 agreement",
}


def display_names(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its columns under their plain names (``COLUMN_NAMES``), for showing, never for reading."""
    return table.rename(columns=COLUMN_NAMES)


def parse_variants(text: str | None) -> list[str]:
    """Comma-separated preset names ('all' for every preset); each is checked."""
    if not text:
        return ["tutorial"]
    names = list(PRESETS) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        preset(name)
    return names


def variant_plan(variants: list[str | QuantSpec],
                 engines: Sequence[str] = ("torch",)) -> list[tuple[str, QuantSpec | str]]:
    """The rows ``benchmark_variants`` measures, in order: (engine, spec) for PyTorch's (fp32 first, each label
    once), then (engine, label) for ONNX Runtime's float export and its int8 model."""
    engines = parse_engines(",".join(engines))
    specs: dict[str, QuantSpec] = {"fp32": PRESETS["fp32"]}
    for v in variants:
        spec = preset(v) if isinstance(v, str) else v
        specs.setdefault(spec.label, spec)
    plan: list[tuple[str, QuantSpec | str]] = []
    for engine in engines:
        labels = specs.values() if engine == "torch" else ORT_VARIANTS
        plan += [(engine, label) for label in labels]
    return plan


def row_label(engine: str, variant: QuantSpec | str) -> str:
    """A row's one distinct name: the spec's label for PyTorch ('tutorial'), the engine's for others
    ('onnxruntime int8'), as ``engine_labels`` names them in a table."""
    return variant.label if engine == "torch" else f"{engine} {variant}"


def measure_variant(model: nn.Module, data: torch.Tensor, engine: str, variant: QuantSpec | str, *,
                    max_tokens: int | None = None, threads: int | None = 1, cache_dir: str | Path | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """One row of ``benchmark_variants`` (without its speedup): ``variant`` is a QuantSpec for PyTorch, a label
    of ``ORT_VARIANTS`` for ONNX Runtime (exported ahead, outside the timing)."""
    with num_threads(threads):
        if engine == "torch":
            candidate = quantize(model, variant)
            size, label = state_dict_bytes(candidate), variant.label
        else:  # exported (or found in the cache) here, before the evaluation's own timing starts
            candidate = onnx_model(model, variant, threads=threads, cache_dir=cache_dir)
            size, label = candidate.size_bytes, variant
        result = evaluate(candidate, data, max_tokens=max_tokens, progress=progress)
    return {"variant": label, "engine": engine, "size_mb": size / 1e6, "loss": result.loss, "ppl": result.perplexity,
            "seconds": result.seconds, "tokens_per_s": result.tokens_per_s}


def variant_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of ``measure_variant`` as ``benchmark_variants``' table: speedup against the first row (fp32), and
    the engine column only when an engine besides PyTorch is in it."""
    table = pd.DataFrame(rows)
    table["speedup"] = table["tokens_per_s"] / table.loc[0, "tokens_per_s"]
    return table[COLUMNS if set(table["engine"]) == {"torch"} else ENGINE_COLUMNS]


def benchmark_variants(
    model: nn.Module,
    data: torch.Tensor,
    variants: list[str | QuantSpec],
    *,
    max_tokens: int | None = None,
    threads: int | None = 1,
    engines: Sequence[str] = ("torch",),
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """One row per variant (fp32 first), each evaluated on the same tokens with the same thread count.

    ``engines`` may add ``onnxruntime``: its fp32 and int8 rows follow PyTorch's, with size being the
    ONNX file's bytes. Speedup is relative to the first row. With PyTorch alone there is no engine column.
    """
    rows = []
    for engine, variant in variant_plan(variants, engines):
        name = row_label(engine, variant)
        report = (lambda done, total, name=name: progress(name, done, total)) if progress else None
        rows.append(measure_variant(model, data, engine, variant, max_tokens=max_tokens, threads=threads,
                                    cache_dir=cache_dir, progress=report))
    return variant_frame(rows)


def engine_labels(table: pd.DataFrame) -> pd.DataFrame:
    """The table with one distinct ``variant`` label per row ('onnxruntime int8'), for charts keyed on it."""
    if "engine" not in table:
        return table
    labelled = table.copy()
    other = labelled["engine"] != "torch"
    labelled.loc[other, "variant"] = labelled.loc[other, "engine"] + " " + labelled.loc[other, "variant"]
    return labelled


def thread_sweep(model: LSTMModel, ids: torch.Tensor, specs: dict[str, QuantSpec] | list[QuantSpec],
                 threads_list: list[int], max_tokens: int | None = None) -> pd.DataFrame:
    """Throughput of each variant at each thread count, on the same tokens.

    Columns: variant, threads, tokens_per_s, seconds, loss.
    """
    if isinstance(specs, list):
        specs = {spec.label: spec for spec in specs}
    rows = []
    for label, spec in specs.items():
        candidate = quantize(model, spec)
        for threads in threads_list:
            with num_threads(threads):
                result = evaluate(candidate, ids, max_tokens=max_tokens)
            rows.append({"variant": label, "threads": threads, "tokens_per_s": result.tokens_per_s,
                         "seconds": result.seconds, "loss": result.loss})
    return pd.DataFrame(rows, columns=["variant", "threads", "tokens_per_s", "seconds", "loss"])


def tokens_for_seconds(model: nn.Module, ids: torch.Tensor, seconds: float, *, probe_tokens: int = 200,
                       step: int = 100) -> int:
    """About how many tokens ``model`` evaluates in ``seconds``, from timing a short probe."""
    probe = evaluate(model, ids, max_tokens=min(probe_tokens, len(ids)))
    wanted = int(probe.tokens_per_s * seconds) // step * step
    return max(step, min(wanted, len(ids) // step * step or len(ids)))


def with_delta_loss(table: pd.DataFrame) -> pd.DataFrame:
    """A ``benchmark_variants`` table with delta_loss: each variant's loss minus the float model's."""
    out = table.copy()
    out["delta_loss"] = out["loss"] - float(out.loc[out["variant"] == "fp32", "loss"].iloc[0])
    return out
