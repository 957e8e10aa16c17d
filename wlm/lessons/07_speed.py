"""Step 7: the tutorial's evaluation of both models, timed on one thread."""
from __future__ import annotations

from wlm.lessons import TUTORIAL

TITLE = "Compare speed and loss"
READS = ("model", "corpus", "tokens")
NEEDS = ("quantized",)
GIVES = ("results",)
TIMED = True
EVALUATES = ("model", "quantized")  # the page times a probe of each first, and follows both with a progress bar
SHOWS = "speed"
EXPLAIN = ("The tutorial's evaluation: batch 1, chunks of 25 words, the hidden state carried from chunk to chunk, "
           "on one thread. The loss is the same on every run; the seconds are this machine's, and vary a little "
           "from run to run. The table below puts them beside the tutorial's own figures.")


def lesson(model, quantized, corpus, tokens):
    import torch

    from wlm.evaluate import evaluate
    from wlm.sizes import state_dict_bytes

    torch.set_num_threads(1)  # as the tutorial
    test = corpus.test[:tokens]
    results = {}
    for name, m in (("float", model), ("quantized", quantized)):
        r = evaluate(m, test)  # batch 1, bptt 25
        results[name] = {"size_mb": state_dict_bytes(m) / 1e6,
                         "loss": r.loss, "seconds": r.seconds}
        print(name, results[name])
    return {"results": results}


def notice(values: dict) -> str:
    f, q = values["results"]["float"], values["results"]["quantized"]
    tf, tq = TUTORIAL["seconds"]
    evaluated = len(values["corpus"].test[:values["tokens"]])  # as the lesson slices it
    return (f"On {evaluated:,} tokens the quantized model took {q['seconds'] / f['seconds']:.0%} of float's time "
            f"(the tutorial: {tq / tf:.0%}) for a loss change of {q['loss'] - f['loss']:+.3f} "
            f"(the tutorial: {TUTORIAL['loss'][1] - TUTORIAL['loss'][0]:+.3f}).")
