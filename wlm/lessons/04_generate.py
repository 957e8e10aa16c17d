"""Step 4: text written by the float model from the sidebar's seed."""
from __future__ import annotations

from wlm.corpus import EOS

TITLE = "Generate text"
READS = ("model", "dictionary", "seed")
GIVES = ("words",)
SHOWS = "words"
EXPLAIN = ("Generating writes one word at a time, each drawn from the model's next-word probabilities with random "
           "numbers that come from the seed: the same seed writes the same text.")


def lesson(model, dictionary, seed):
    from wlm.generate import generate

    words = list(generate(model, dictionary, words=30,
                          temperature=1.0, seed=seed))
    print(" ".join(words))
    return {"words": words}


def notice(values: dict) -> str:
    words = values["words"]
    distinct = len(set(words))
    ends = words.count(EOS)
    return (f"Seed {values['seed']} wrote {len(words)} words, {distinct} of them different, with {ends} line "
            f"end{'s' * (ends != 1)}; the same seed writes the same text every time (change it in the sidebar).")
