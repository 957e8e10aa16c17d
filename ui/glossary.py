"""The words a class meets, in one place: each column's plain name (``wlm.benchmark.COLUMN_NAMES``, which the
CLI's markdown shares), a short help text per term (Streamlit's ``help=`` on metrics and columns), and the
"What the words mean" expander a tab opens over the terms it shows."""
from __future__ import annotations

from typing import Iterable

import streamlit as st

from wlm.benchmark import COLUMN_NAMES

# One short text per term, keyed by the term as the page writes it.
HELP = {
    "loss": "The average surprise per next word, in nats: minus the natural log of the probability the model gave "
            "the word that actually came next. Lower is better.",
    "perplexity": "e to the power of the loss: the model is as unsure as if it picked among this many equally "
                  "likely words. Lower is better.",
    "nats": "The unit of the loss and the KL divergence (natural logarithms); 1 nat is about 1.44 bits.",
    "predictions": "An evaluation of N tokens scores N − 1 next-word predictions: each token is read and the one "
                   "after it predicted, and the last token has nothing after it.",
    "size (MB)": "The model's weights as torch.save stores them (the .onnx file for ONNX Runtime), in megabytes.",
    "seconds": "Wall-clock time to score the predictions, measured here.",
    "tokens/s": "Predictions scored per second on this machine, at the sidebar's thread count. A timing on a "
                "machine shared with other work moves from run to run.",
    "speedup": "tokens/s divided by the first row's (PyTorch's float model): 2× is twice as fast.",
    "Δ loss": "The quantized model's loss minus the float model's, on the same tokens: how much quantizing cost. "
              "Negative means it happened to do better.",
    "engine": "What runs the model: PyTorch (torch), or ONNX Runtime on the model exported to an .onnx file.",
    "top-1 agreement": "How often both models rank the same word first, the likeliest next word, at the same "
                       "place in the text.",
    "KL divergence (nats)": "How far the quantized model's next-word probabilities are from the float model's at "
                            "one prediction: 0 when they are identical, larger the more probability moved. In "
                            "nats, like the loss.",
    "median": "The middle value: half of the predictions are below it. Unlike the mean, a few extreme "
              "predictions do not pull it up.",
    "p99": "The 99th percentile: 99 of every 100 predictions are at or below it, so it shows the rare bad cases "
           "that an average hides.",
    "SQNR (dB)": "Signal-to-quantization-noise ratio: how big a weight is against its rounding error, in "
                 "decibels. Higher is better; each 6 dB is about one bit of precision.",
    "per-group": "One scale for each run of G consecutive weights of a row (G = 64: a row of 512 weights has 8 "
                 "scales), so one large weight coarsens the grid of its own group only, not of its whole row or "
                 "tensor. The price is more scales to store.",
    "asymmetric (zero point)": "Each row or group gets a zero point as well as a scale, so its grid spans that "
                               "block's own smallest to largest weight instead of ±its largest |weight|: no levels "
                               "are spent on a side the weights never reach. The zero point is stored too.",
    "bits per weight": "What one rounded weight really takes stored: its N-bit code plus its share of the scales "
                       "(float16, 16 bits each) and zero points (N bits each) of its block. 4 bits with one scale "
                       "per 64 weights is 4 + 16/64 = 4.25 bits per weight.",
    "per-tensor": "One scale for a whole weight tensor: its largest |weight| sets the grid of every weight in it "
                  "(torch's int8 rule for the LSTM and the decoder).",
    "per-row": "One scale for each row of a weight (one output of the layer, or one word of the embedding), so a "
               "row of small weights keeps a fine grid of its own.",
    "group size": "G, how many consecutive weights of a row share one scale in a per-group scheme: a smaller G "
                  "rounds more finely and stores more scales.",
    "mean KL": "The KL divergence of the quantized model's next-word probabilities from the float model's, "
               "averaged over every prediction, in nats: 0 when the two agree exactly. Unlike Δ loss it never "
               "comes out below 0 by luck, so it says which change costs more.",
    "real int8": "torch's own dynamic int8 kernels (quantize_dynamic): int8 weights with one scale per tensor "
                 "(a scale and an offset per row for the embedding), and activations rounded at run time.",
    "simulated": "The weights rounded to the nearest of 2^N levels and put back as float; the model then runs in "
                 "float with no activation rounding, since PyTorch has no kernel for fewer than 8 bits.",
    "stored size (MB)": "What the weights would take in a file stored so: N bits a weight plus the scales and "
                        "zero points of their blocks, biases and float parts at 32 bits.",
    "uniform choice": "Every part of the model (the embedding too) at the same width and scheme.",
    "mixed precision": "Each part at its own width and scheme. The map predicts a mix's Δ loss by adding up its "
                       "parts' changes; the mix is then measured as a whole model.",
    "<unk>": "The one token for every word outside the vocabulary: Wikitext-2 replaced rare words by `<unk>` "
             "before any model saw them, so a model predicts `<unk>` like any other word.",
    "<eos>": "End of a line: the tutorial adds it after every line of the corpus, so a model learns where lines "
             "end; the page shows it as a line break.",
    "@-@": "Wikitext-2 writes a hyphen inside a word as `@-@` between spaces (`state @-@ of @-@ the @-@ art`), "
           "and a comma or point inside a number as `@,@` and `@.@` (`1 @,@ 000`, `3 @.@ 5`); headings are "
           "written as `= = History = =`.",
}

TOKENS = ("<unk>", "<eos>", "@-@")  # words of the corpus itself; written as code wherever markdown shows them

# Which term explains each column.
COLUMN_TERMS = {"size_mb": "size (MB)", "loss": "loss", "ppl": "perplexity", "perplexity": "perplexity",
                "seconds": "seconds", "tokens_per_s": "tokens/s", "speedup": "speedup", "delta_loss": "Δ loss",
                "engine": "engine", "tokens": "predictions", "sqnr_db": "SQNR (dB)", "kl_mean": "mean KL",
                "bits_per_weight": "bits per weight", "group_size": "group size", "top1_agreement": "top-1 agreement"}


def name(column: str) -> str:
    """The plain name a column is shown under (its code name where it has none)."""
    return COLUMN_NAMES.get(column, column)


def help_text(term: str) -> str:
    """The help text of a term of ``HELP`` (a KeyError names a term nobody wrote down)."""
    return HELP[term]


def column_help(column: str) -> str | None:
    term = COLUMN_TERMS.get(column)
    return HELP[term] if term else None


def column_config(columns: Iterable[str]) -> dict:
    """``st.dataframe``'s ``column_config`` for ``columns``: each under its plain name, with its help text (the
    numbers keep the dataframe's own format, a Styler's)."""
    return {column: st.column_config.Column(name(column), help=column_help(column)) for column in columns}


def expander(terms: Iterable[str], title: str = "What the words mean") -> None:
    """One collapsed expander explaining ``terms`` (keys of ``HELP``), in the order given."""
    terms = list(terms)
    unknown = [t for t in terms if t not in HELP]
    if unknown:
        raise KeyError(f"no help text for {unknown}")
    with st.expander(title, icon=":material/menu_book:"):
        st.markdown("\n".join(f"- {_shown(term)}: {HELP[term]}" for term in terms))


def _shown(term: str) -> str:
    """A term as the expander heads its line: a token of the corpus as code (so ``<unk>`` is no HTML tag)."""
    return f"`{term}`" if term in TOKENS else f"**{term}**"
