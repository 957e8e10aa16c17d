"""Step 6: each part's saved size, float against quantized."""
from __future__ import annotations

from wlm.sizes import format_mb

TITLE = "Compare size"
READS = ("model",)
NEEDS = ("quantized",)
GIVES = ("sizes",)
SHOWS = "sizes"
EXPLAIN = ("Saving each part shows where the bytes went: an int8 weight takes a quarter of a float32 one, but only "
           "the quantized parts shrink.")


def lesson(model, quantized):
    import io

    import torch

    def megabytes(module):
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        return buffer.tell() / 1e6

    sizes = {}
    for name, m in (("float", model), ("quantized", quantized)):
        sizes[name] = {part: megabytes(getattr(m, part))
                       for part in ("encoder", "rnn", "decoder")}
        print(name, {p: round(mb, 1) for p, mb in sizes[name].items()})
    return {"sizes": sizes}


def notice(values: dict) -> str:
    f, q = values["sizes"]["float"], values["sizes"]["quantized"]
    total_f, total_q = sum(f.values()), sum(q.values())
    return (f"{total_f:.1f} → {total_q:.1f} MB is only {1 - total_q / total_f:.0%} smaller: the embedding holds "
            f"{format_mb(q['encoder'])} of the {format_mb(total_q)} that remain "
            f"({q['encoder'] / total_q:.0%}), and quantizing LSTM and Linear cannot shrink it.")
