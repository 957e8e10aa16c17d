"""The model as files any ONNX Runtime runs, without wlm or torch: the ``.onnx`` graph (float, or int8 from ONNX
Runtime's ``quantize_dynamic``), its vocabulary (one word a line, in id order) and a README whose dozen lines of
numpy read a sentence and print the next-word probabilities.

The graph is the one ``wlm.onnx_engine`` exports and measures: inputs ``input`` (int64 ids [seq, batch]), ``h0``
and ``c0`` (the LSTM state), outputs ``logits``, ``hn`` and ``cn``.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .corpus import Dictionary
from .errors import WlmError
from .onnx_engine import ORT_VARIANTS, onnx_files
from .out_files import Contents, write_files, zip_bytes

VOCAB_FILE, README_FILE = "vocab.txt", "README.md"
ENGINES = ("onnxruntime",)

WHAT = {"fp32": "the float model (float32 weights)",
        "int8": "int8 weights from ONNX Runtime's `quantize_dynamic` (embedding, LSTM and decoder; the inputs of "
                "each product are quantized at run time)"}

# The README's code, also run by the tests as it stands here: numpy and onnxruntime only.
NEXT_WORDS = """\
import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("{model_file}")
vocab = open("vocab.txt", encoding="utf-8").read().splitlines()  # line number = word id
ids = {{word: i for i, word in enumerate(vocab)}}
sentence = " ".join(sys.argv[1:]) or "{sentence}"
x = np.array([[ids[w] if w in ids else ids["<unk>"]] for w in sentence.split()], dtype=np.int64)  # [seq, 1]
layers, _, hidden = session.get_inputs()[1].shape  # h0: [layers, batch, hidden]
h0 = c0 = np.zeros((layers, 1, hidden), dtype=np.float32)
logits, hn, cn = session.run(["logits", "hn", "cn"], {{"input": x, "h0": h0, "c0": c0}})
p = np.exp(logits[-1, 0] - logits[-1, 0].max())  # softmax of the scores after the last word
p /= p.sum()
for i in np.argsort(-p)[:10]:
    print(f"{{p[i]:.4f}}  {{vocab[i]}}")
"""

README = """\
# {name} for ONNX Runtime ({variant})

The word language model of PyTorch's tutorial "Dynamic Quantization on an LSTM Word Language Model": an embedding \
of {ninp}, {nlayers} LSTM layers of {nhid} and a decoder over {ntoken:,} words, exported by wlm \
(`python -m wlm export --engine onnxruntime --variant {variant}`) as {what}.

- `{model_file}`: the graph. Inputs `input` (int64 word ids, [seq, batch]), `h0` and `c0` (float32 \
[{nlayers}, batch, {nhid}], zeros to start); outputs `logits` (float32 [seq, batch, {ntoken}]: after each input \
word, a score for every word of the vocabulary being the next), `hn` and `cn` (the state after the last word: pass \
them as `h0` and `c0` with the words that follow).
- `vocab.txt`: the vocabulary, one word a line; a word's id is its line number, counting from 0. Text is split on \
spaces, as in Wikitext-2 (punctuation as separate words, `<unk>` for rare words, `<eos>` at the end of a line).

## Next-word probabilities, with numpy and onnxruntime only

Save these lines as `next_words.py` beside the two files, `pip install numpy onnxruntime`, then run \
`python next_words.py {sentence}`:

```python
{code}```
"""


def check_variant(variant: str) -> str:
    if variant not in ORT_VARIANTS:
        raise WlmError(f"unknown variant {variant!r} for onnxruntime; choose from {', '.join(ORT_VARIANTS)}")
    return variant


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise WlmError(f"cannot export for engine {engine!r}; choose from {', '.join(ENGINES)}")
    return engine


def model_file(variant: str) -> str:
    return f"model.{variant}.onnx"


def export_names(variant: str) -> tuple[str, ...]:
    """The files an export writes, in order."""
    return model_file(variant), VOCAB_FILE, README_FILE


def readme(model: nn.Module, variant: str, sentence: str = "the meaning of life is") -> str:
    config = model.config
    code = NEXT_WORDS.format(model_file=model_file(variant), sentence=sentence)
    return README.format(name="wlm-lstm", variant=variant, what=WHAT[variant], model_file=model_file(variant),
                         ninp=config.ninp, nhid=config.nhid, nlayers=config.nlayers, ntoken=config.ntoken,
                         sentence=sentence, code=code)


def readme_code(text: str) -> str:
    """The Python lines of a README written here (for a test, or to save as a file)."""
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def export_files(model: nn.Module, dictionary: Dictionary, variant: str = "int8", *,
                 cache_dir: str | Path | None = None) -> dict[str, Contents]:
    """{file name: contents} of the export; the model is exported (or taken from the ONNX cache) here."""
    check_variant(variant)
    if dictionary is None or len(dictionary) != getattr(getattr(model, "config", None), "ntoken", None):
        raise WlmError("the ONNX export needs the model's vocabulary, one word per output; a bare weights file "
                       "has none: pass --data DIR (the corpus it was trained on)")
    path = onnx_files(model, cache_dir)[variant]
    vocab = "".join(word + "\n" for word in dictionary.idx2word)
    return dict(zip(export_names(variant), (path, vocab.encode("utf-8"), readme(model, variant).encode("utf-8"))))


def write_export(model: nn.Module, dictionary: Dictionary, out: str | Path, variant: str = "int8", *,
                 cache_dir: str | Path | None = None) -> list[Path]:
    """Write the export into the folder ``out``; returns the paths written."""
    return write_files(out, export_files(model, dictionary, variant, cache_dir=cache_dir))


def export_zip(model: nn.Module, dictionary: Dictionary, variant: str = "int8", *,
               cache_dir: str | Path | None = None) -> bytes:
    """The export as one zip, its files in a folder ``wlm-onnx-<variant>`` (the Model tab's download)."""
    return zip_bytes(export_files(model, dictionary, variant, cache_dir=cache_dir), zip_folder(variant))


def zip_folder(variant: str) -> str:
    return f"wlm-onnx-{variant}"
