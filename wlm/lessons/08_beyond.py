"""Step 8: what the tutorial did not show, each variant with its size."""
from __future__ import annotations

from wlm.sizes import format_mb

TITLE = "What the tutorial did not show"
READS = ("model",)
GIVES = ("beyond",)
SHOWS = "links"
EXPLAIN = ("Beyond the tutorial: quantizing the embedding too, one scale per output row of the decoder, and float16 "
           "weights, each with its size. The app's other tabs show what each does to the loss and the speed.")


def lesson(model):
    from wlm.quantize import PRESETS, quantize
    from wlm.sizes import state_dict_bytes

    beyond = {}
    for name in ("tutorial", "int8+emb8",
                 "per-channel", "float16"):
        variant = quantize(model, PRESETS[name])
        beyond[name] = state_dict_bytes(variant) / 1e6
        print(f"{name:12} {beyond[name]:6.1f} MB")
    return {"beyond": beyond}


def notice(values: dict) -> str:
    b = values["beyond"]
    return (f"Quantizing the embedding too takes the tutorial's {format_mb(b['tutorial'])} down to "
            f"{format_mb(b['int8+emb8'])}; per-channel scales cost "
            f"{format_mb(b['per-channel'] - b['tutorial'])} more, and float16 weights save nothing on disk here "
            f"({format_mb(b['float16'])}); the tabs named below show what each does to loss and speed.")
