"""The tutorial as eight lessons: for each, the few lines a student would type, run as shown on the model and corpus
loaded now, and one sentence saying what to notice in what they printed.

A lesson's code is a string, so what a page shows is exactly what runs. It reads the names the app already holds
(``model``, ``loaded``, ``corpus``, ``dictionary``, ``seed``, ``tokens``) and what earlier lessons made
(``quantized``, from lesson 5); ``run_lesson`` runs the lessons a later one needs first.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from torch import nn

from .corpus import EOS
from .model import PARTS

# The tutorial's own results (its pretrained weights, the full test split, one thread, a MacBook).
TUTORIAL = {"size_mb": (113.944, 79.738), "loss": (5.167, 5.168), "seconds": (209.2, 114.1)}

# torchao against torch.ao on this machine, measured once (see README, "The tutorial's API is deprecated").
TORCHAO_NOTE = (
    "torch 2.13 warns that the tutorial's eager-mode `torch.ao.quantization` will move to torchao, and torchao has "
    "no `nn.LSTM` support: its `Int8DynamicActivationInt8WeightConfig` quantizes only the decoder and leaves the "
    "LSTM in float. Measured here on the bundled model (1 thread, first 2,000 test tokens, Intel Xeon with AVX-512 "
    "VNNI): float 2,031 tok/s, `torch.ao` `quantize_dynamic` of the decoder 3,778 tok/s, torchao 0.18 of the "
    "decoder 905 tok/s, slower than float — so this demo keeps the tutorial's API.")


@dataclass(frozen=True)
class Lesson:
    title: str
    code: str
    notice: Callable[[dict], str]  # from the names the code left behind
    needs: tuple[int, ...] = ()  # lessons (1-based) whose names this one reads


@dataclass(frozen=True)
class LessonRun:
    """What a lesson's code printed, the plain values it left behind, and what to notice in them."""

    output: str
    values: dict
    notice: str


def _mb(x: float) -> str:
    return f"{x:.1f} MB" if x >= 1 else f"{x * 1000:.0f} kB"


# --- 1. define the model ----------------------------------------------------------------------

DEFINE = '''\
def count(module):
    return sum(p.numel() for p in module.parameters())

print(model)
weights = {name: count(getattr(model, name))
           for name in ("encoder", "rnn", "decoder")}
print(weights, f"total {sum(weights.values()):,}")
'''


def _define_notice(v: dict) -> str:
    weights = v["weights"]
    total = sum(weights.values())
    return (f"Of {total:,} weights the embedding (encoder) holds {weights['encoder'] / total:.0%} and the decoder "
            f"{weights['decoder'] / total:.0%}; the {v['model'].nlayers}-layer LSTM, which reads every word, only "
            f"{weights['rnn'] / total:.0%}.")


# --- 2. load the data -------------------------------------------------------------------------

DATA = '''\
vocab = corpus.dictionary
print(f"{len(vocab):,} words in the vocabulary")
for split in ("train", "valid", "test"):
    print(f"{split}: {len(getattr(corpus, split)):,} tokens")
eos = vocab.word2idx["<eos>"]
ids = corpus.test[:200].tolist()
# the first line that has words, as words and as ids
start = next(i for i, t in enumerate(ids) if t != eos)
line = ids[start:ids.index(eos, start) + 1]
print([vocab.idx2word[i] for i in line])
print(line)
'''


def _data_notice(v: dict) -> str:
    corpus, line = v["corpus"], v["line"]
    return (f"Every word became an id and every line ends with <eos> (id {v['eos']:,}): the test split is "
            f"{len(corpus.test):,} ids in a row, and its first line with words is {len(line)} of them.")


# --- 3. load the pretrained weights -----------------------------------------------------------

WEIGHTS = '''\
card = loaded.card  # card.json; a bare .pth has none
recipe = card.get("recipe", {})
keys = ("optimizer", "lr", "epochs",
        "batch_size", "bptt", "dropout")
facts = {
    "weights": loaded.source,
    "recipe": ", ".join(f"{k} {recipe[k]}" for k in keys
                        if k in recipe) or "not recorded",
    "test loss (float)":
        card.get("test_loss_fp32", "not recorded"),
}
for what, value in facts.items():
    print(f"{what}: {value}")
'''


def _weights_notice(v: dict) -> str:
    loss = v["facts"]["test loss (float)"]
    if not isinstance(loss, (int, float)):
        what = "Their card records no test loss" if v["card"] else "These weights carry no card"
        return f"{what}, so nothing here says how well they score: lesson 7 measures their loss."
    tutorial = TUTORIAL["loss"][0]
    better = "lower than" if loss < tutorial else "higher than" if loss > tutorial else "the same as"
    return (f"Test loss {loss:.3f} on the whole test split is {better} the tutorial weights' {tutorial:.3f}: "
            "lower means the true next word got more probability.")


# --- 4. generate text -------------------------------------------------------------------------

GENERATE = '''\
from wlm.generate import generate

words = list(generate(model, dictionary, words=30,
                      temperature=1.0, seed=seed))
print(" ".join(words))
'''


def _generate_notice(v: dict) -> str:
    words = v["words"]
    distinct = len(set(words))
    ends = words.count(EOS)
    return (f"Seed {v['seed']} wrote {len(words)} words, {distinct} of them different, with {ends} line "
            f"end{'s' * (ends != 1)}; the same seed writes the same text every time (change it in the sidebar).")


# --- 5. quantize ------------------------------------------------------------------------------

QUANTIZE = '''\
import torch
from torch import nn

quantized = torch.ao.quantization.quantize_dynamic(
    model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
print(quantized)
'''


def changed_parts(model: nn.Module, quantized: nn.Module) -> dict[str, tuple[str, str]]:
    """Each part's module in the float and the quantized model, by the name ``print`` gives it:
    {attr: (float name, quantized name)} ('LSTM', 'DynamicQuantizedLSTM'; a class's own name would say LSTM twice)."""
    return {part.attr: (getattr(model, part.attr)._get_name(), getattr(quantized, part.attr)._get_name())
            for part in PARTS}


def marked_architecture(model: nn.Module, quantized: nn.Module) -> str:
    """``print(quantized)`` with '+' before each module that quantizing replaced and ' ' before the rest (a diff)."""
    changed = {attr for attr, (a, b) in changed_parts(model, quantized).items() if a != b}
    lines = []
    for line in str(quantized).splitlines():
        name = line.strip().split(")", 1)[0].lstrip("(")
        lines.append(("+ " if line.startswith("  (") and name in changed else "  ") + line)
    return "\n".join(lines)


def _quantize_notice(v: dict) -> str:
    parts = changed_parts(v["model"], v["quantized"])
    swapped = [f"{attr} → {b}" for attr, (a, b) in parts.items() if a != b]
    kept = [f"{attr} ({a})" for attr, (a, b) in parts.items() if a == b]
    return (f"One call replaced {len(swapped)} of {len(parts)} parts ({', '.join(swapped)}); "
            + (f"{', '.join(kept)} stayed float, as it was not in the set of layer types passed."
               if kept else "every part changed."))


# --- 6. compare size --------------------------------------------------------------------------

SIZE = '''\
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
'''


def _size_notice(v: dict) -> str:
    f, q = v["sizes"]["float"], v["sizes"]["quantized"]
    total_f, total_q = sum(f.values()), sum(q.values())
    return (f"{total_f:.1f} → {total_q:.1f} MB is only {1 - total_q / total_f:.0%} smaller: the embedding holds "
            f"{_mb(q['encoder'])} of the {_mb(total_q)} that remain ({q['encoder'] / total_q:.0%}), and quantizing "
            "LSTM and Linear cannot shrink it.")


def size_table(sizes: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Lesson 6's sizes as a table: one row per part and a total, float and quantized MB."""
    table = pd.DataFrame(sizes)
    table.loc["total"] = table.sum()
    table.index.name = "part"
    return table


# --- 7. compare speed and loss ----------------------------------------------------------------

SPEED = '''\
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
'''


def _speed_notice(v: dict) -> str:
    f, q = v["results"]["float"], v["results"]["quantized"]
    tf, tq = TUTORIAL["seconds"]
    return (f"On {len(v['test']):,} tokens the quantized model took {q['seconds'] / f['seconds']:.0%} of float's time "
            f"(the tutorial: {tq / tf:.0%}) for a loss change of {q['loss'] - f['loss']:+.3f} "
            f"(the tutorial: {TUTORIAL['loss'][1] - TUTORIAL['loss'][0]:+.3f}).")


def speed_table(results: dict[str, dict[str, float]], tokens: int) -> pd.DataFrame:
    """Lesson 7's results beside the tutorial's: a row per measure (size, loss, seconds), a column per model,
    ours on ``tokens`` test tokens then the tutorial's on its whole test split."""
    columns = {}
    for name in ("float", "quantized"):
        columns[f"{name}, here"] = [results[name][k] for k in TUTORIAL]
    for i, name in enumerate(("float", "quantized")):
        columns[f"{name}, tutorial"] = [TUTORIAL[k][i] for k in TUTORIAL]
    measures = ["size (MB)", f"loss ({tokens:,} tokens here)", f"seconds ({tokens:,} tokens here)"]
    return pd.DataFrame(columns, index=pd.Index(measures, name="measure"))


# --- 8. what the tutorial did not show --------------------------------------------------------

BEYOND = '''\
from wlm.quantize import PRESETS, quantize
from wlm.sizes import state_dict_bytes

beyond = {}
for name in ("tutorial", "int8+emb8",
             "per-channel", "float16"):
    variant = quantize(model, PRESETS[name])
    beyond[name] = state_dict_bytes(variant) / 1e6
    print(f"{name:12} {beyond[name]:6.1f} MB")
'''


def _beyond_notice(v: dict) -> str:
    b = v["beyond"]
    return (f"Quantizing the embedding too takes the tutorial's {_mb(b['tutorial'])} down to {_mb(b['int8+emb8'])}; "
            f"per-channel scales cost {_mb(b['per-channel'] - b['tutorial'])} more, and float16 weights save "
            f"nothing on disk here ({_mb(b['float16'])}); the tabs named below show what each does to loss "
            "and speed.")


LESSONS = [
    Lesson("Define the model", DEFINE, _define_notice),
    Lesson("Load the data", DATA, _data_notice),
    Lesson("Load the pretrained weights", WEIGHTS, _weights_notice),
    Lesson("Generate text", GENERATE, _generate_notice),
    Lesson("Quantize", QUANTIZE, _quantize_notice),
    Lesson("Compare size", SIZE, _size_notice, needs=(5,)),
    Lesson("Compare speed and loss", SPEED, _speed_notice, needs=(5,)),
    Lesson("What the tutorial did not show", BEYOND, _beyond_notice),
]

# What each lesson leaves behind for the page (and for later lessons): plain values, or models lesson 5 makes.
GIVES = {1: ("weights",), 2: ("eos", "line"), 3: ("facts",), 4: ("words",), 5: ("quantized",), 6: ("sizes",),
         7: ("results",), 8: ("beyond",)}


def run_code(code: str, names: dict) -> tuple[str, dict]:
    """Run ``code`` with ``names`` defined; returns what it printed and every name it left behind."""
    out = io.StringIO()
    namespace = {**names, "print": lambda *args, **kwargs: print(*args, **kwargs, file=out)}
    exec(compile(code, "<lesson>", "exec"), namespace)  # noqa: S102 - our own lesson code, shown on the page
    return out.getvalue(), namespace


def run_lesson(number: int, names: dict, earlier: dict[int, dict] | None = None) -> LessonRun:
    """Run lesson ``number`` (1-based) on ``names`` (model, loaded, corpus, dictionary, seed, tokens).

    Lessons it needs are run first unless ``earlier`` already holds what they left behind ({number: values});
    ``earlier`` collects it, so a caller can run lesson 5 once for 6 and 7.
    """
    if not 1 <= number <= len(LESSONS):
        raise ValueError(f"no lesson {number}; there are {len(LESSONS)}")
    earlier = {} if earlier is None else earlier
    lesson = LESSONS[number - 1]
    context = dict(names)
    for need in lesson.needs:
        if need not in earlier:
            earlier[need] = run_lesson(need, names, earlier).values
        context.update(earlier[need])
    output, namespace = run_code(lesson.code, context)
    values = {name: namespace[name] for name in GIVES[number]}
    earlier[number] = values
    return LessonRun(output, values, lesson.notice({**context, **namespace}))
