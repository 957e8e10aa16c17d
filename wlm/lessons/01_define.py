"""Step 1: the tutorial's model printed, and its weights counted part by part."""
from __future__ import annotations

TITLE = "Define the model"
READS = ("model",)
GIVES = ("weights",)
SHOWS = "printed"
EXPLAIN = ("The tutorial's model has three parts: an embedding that turns each word id into a vector, a stack of "
           "LSTM layers that reads the words one after another, and a linear decoder that scores every word of the "
           "vocabulary as the next one. Counting each part's weights shows where the model's size lives.")


def lesson(model):
    def count(module):
        return sum(p.numel() for p in module.parameters())

    print(model)
    weights = {name: count(getattr(model, name))
               for name in ("encoder", "rnn", "decoder")}
    print(weights, f"total {sum(weights.values()):,}")
    return {"weights": weights}


def notice(values: dict) -> str:
    weights = values["weights"]
    total = sum(weights.values())
    return (f"Of {total:,} weights the embedding (encoder) holds {weights['encoder'] / total:.0%} and the decoder "
            f"{weights['decoder'] / total:.0%}; the {values['model'].nlayers}-layer LSTM, which reads every word, "
            f"only {weights['rnn'] / total:.0%}.")
