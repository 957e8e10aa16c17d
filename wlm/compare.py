"""The tutorial's comparison table: size, loss and speed of float and quantized variants."""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
from torch import nn

from .evaluate import evaluate, num_threads
from .quantize import PRESETS, QuantSpec, preset, quantize, state_dict_bytes

COLUMNS = ["variant", "size_mb", "loss", "ppl", "seconds", "tokens_per_s", "speedup"]


def parse_variants(text: str | None) -> list[str]:
    """Comma-separated preset names ('all' for every preset); each is checked."""
    if not text:
        return ["tutorial"]
    names = list(PRESETS) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        preset(name)
    return names


def compare_variants(
    model: nn.Module,
    data: torch.Tensor,
    variants: list[str | QuantSpec],
    *,
    max_tokens: int | None = None,
    threads: int | None = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """One row per variant (fp32 first), each evaluated on the same tokens with the same thread count."""
    specs: dict[str, QuantSpec] = {"fp32": PRESETS["fp32"]}
    for v in variants:
        spec = preset(v) if isinstance(v, str) else v
        specs.setdefault(spec.label, spec)
    rows = []
    with num_threads(threads):
        for label, spec in specs.items():
            variant = quantize(model, spec)
            report = (lambda done, total, label=label: progress(label, done, total)) if progress else None
            result = evaluate(variant, data, max_tokens=max_tokens, progress=report)
            rows.append({"variant": label, "size_mb": state_dict_bytes(variant) / 1e6, "loss": result.loss,
                         "ppl": result.perplexity, "seconds": result.seconds, "tokens_per_s": result.tokens_per_s})
    table = pd.DataFrame(rows)
    table["speedup"] = table["tokens_per_s"] / table.loc[0, "tokens_per_s"]
    return table[COLUMNS]
