"""Step 5: the tutorial's one call, and which parts of the model it replaced."""
from __future__ import annotations

from wlm.lessons import changed_parts

TITLE = "Quantize"
READS = ("model",)
GIVES = ("quantized",)
SHOWS = "architecture"
EXPLAIN = ("One call of `quantize_dynamic` replaces each `nn.LSTM` and `nn.Linear` with a version that stores its "
           "weights as int8 and quantizes its inputs on the fly, call by call. The embedding is not in the set of "
           "layer types passed, so it stays float.")


def lesson(model):
    import torch
    from torch import nn

    quantized = torch.ao.quantization.quantize_dynamic(
        model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    print(quantized)
    return {"quantized": quantized}


def notice(values: dict) -> str:
    parts = changed_parts(values["model"], values["quantized"])
    swapped = [f"{attr} → {b}" for attr, (a, b) in parts.items() if a != b]
    kept = [f"{attr} ({a})" for attr, (a, b) in parts.items() if a == b]
    return (f"One call replaced {len(swapped)} of {len(parts)} parts ({', '.join(swapped)}); "
            + (f"{', '.join(kept)} stayed float, as it was not in the set of layer types passed."
               if kept else "every part changed."))
