"""The tutorial as lessons, one file each: the few lines a student would type, run as shown on the model and corpus
loaded now, and one sentence saying what to notice in what they printed.

Adding a lesson is adding one file here, ``NN_name.py``: files are taken in the order of their names, so
``09_export.py`` becomes step 9 of the Walkthrough tab, the notebook and the script (``08_beyond.py`` is a short
one to copy). A lesson file declares, at module level:

- ``TITLE``: the card's heading.
- ``READS``: the setup names it reads, of ``SETUP_NAMES`` (``model``, ``loaded``, ``corpus``, ``dictionary``,
  ``seed``, ``tokens``). Its cached run's key holds only these (and what the lessons it needs read), and the page
  runs it only once they are loaded.
- ``NEEDS`` (default none): names that earlier lessons give, such as ``quantized`` from step 5; those lessons run
  first, once, and what they gave is kept for every lesson that needs it.
- ``GIVES``: the names it hands back, for the page, its notice and later lessons.
- ``TIMED`` (default False): True for a timing, which runs alone on the server's timing queue, on one thread.
- ``EVALUATES`` (default none): the names of the models its code passes to ``wlm.evaluate.evaluate`` on the first
  ``tokens`` of the test split, in the order it evaluates them (step 7's ``("model", "quantized")``). The page
  estimates the run from a short probe of each (``estimate_seconds``) before it starts, and follows each
  ``evaluate`` call with a progress bar (``wlm.evaluate.reporting_to``): the code shown is still the code that runs.
- ``SHOWS``: how the page shows what it gave, one of ``ui.walkthrough_tab.PRESENTERS``: ``printed`` (what it
  printed), ``facts``, ``words``, ``architecture``, ``sizes``, ``speed`` or ``links``; a new way is one presenting
  function there. ``sizes`` and ``speed`` also print their table in the notebook (``wlm.notebook.TABLE_CELLS``).
- ``EXPLAIN``: the notebook's paragraph under the title, in words true of any model and corpus.
- ``def lesson(...)``: its parameters are its ``READS`` and ``NEEDS``, and it ends with a ``return`` of a dict of
  its ``GIVES`` (``return {"sizes": sizes}``). Its body, dedented and without that ``return``, is the code the
  card and the notebook show, so it has no docstring and imports what it uses inside; it is the code that runs,
  and ruff checks it like any module. What it prints goes to its card, not to the server's stdout.
- ``def notice(values) -> str``: what to notice, from the names it read and the names it gave.

``discover`` checks the declarations as the lessons load, so a slip in a new file fails at import, naming the
file; ``run_lesson`` checks that what it returned is its ``GIVES``.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import re
import textwrap
import types
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd
from torch import nn

from ..evaluate import evaluate
from ..model import PARTS
from ..torch_internals import module_display_name

SETUP_NAMES = ("model", "loaded", "corpus", "dictionary", "seed", "tokens")
LESSON_TOKENS = 1000  # the test tokens a timed lesson starts on: float and int8 take about 2 s on them here
PROBE_TOKENS = 250  # the test tokens ``estimate_seconds`` times each model on, twice
FOLDER = Path(__file__).parent
LESSON_FILE = re.compile(r"\d\d_\w+\.py")

# The tutorial's own results (its pretrained weights, the full test split, one thread, a MacBook).
TUTORIAL = {"size_mb": (113.944, 79.738), "loss": (5.167, 5.168), "seconds": (209.2, 114.1)}

# torchao against torch.ao, measured once by hand while this project was written (torchao is not a dependency, so
# the app cannot measure it): the figures and their context are README's section "The tutorial's API is deprecated".
TORCHAO_MEASURED = {"machine": "the project's development machine (an Intel Xeon with AVX-512 VNNI, nothing else "
                               "running)", "when": "November 2026", "torch": "2.13", "torchao": "0.18"}
TORCHAO_NOTE = (
    "torch {torch} warns that the tutorial's eager-mode `torch.ao.quantization` will move to torchao, and torchao "
    "has no `nn.LSTM` support: its `Int8DynamicActivationInt8WeightConfig` quantizes only the decoder and leaves the "
    "LSTM in float. On the bundled model (1 thread, the first 2,000 test tokens): float 2,031 tok/s, `torch.ao` "
    "`quantize_dynamic` of the decoder 3,778 tok/s, torchao of the decoder 905 tok/s, slower than float, for the "
    "same loss (4.920, 4.922, 4.920). So this demo keeps the tutorial's API.\n\n"
    "**Not measured live:** these are fixed figures, measured once by hand in {when} on {machine} with torch {torch} "
    "and torchao {torchao}; torchao is not a dependency of this app, so this server cannot measure them again."
).format(**TORCHAO_MEASURED)


class LessonError(Exception):
    """A lesson file that breaks the format above."""


# --- what the lessons leave, as the page and the notebook lay it out ---------------------------------------------
# Defined before the lessons load (at the end of this file), since lesson files import them from here.

def changed_parts(model: nn.Module, quantized: nn.Module) -> dict[str, tuple[str, str]]:
    """Each part's module in the float and the quantized model, by the name ``print`` gives it:
    {attr: (float name, quantized name)} ('LSTM', 'DynamicQuantizedLSTM'; a class's own name would say LSTM twice)."""
    return {part.attr: tuple(module_display_name(getattr(m, part.attr)) for m in (model, quantized))
            for part in PARTS}


def marked_architecture(model: nn.Module, quantized: nn.Module) -> str:
    """``print(quantized)`` with '+' before each module that quantizing replaced and ' ' before the rest (a diff)."""
    changed = {attr for attr, (a, b) in changed_parts(model, quantized).items() if a != b}
    lines = []
    for line in str(quantized).splitlines():
        name = line.strip().split(")", 1)[0].lstrip("(")
        lines.append(("+ " if line.startswith("  (") and name in changed else "  ") + line)
    return "\n".join(lines)


def size_table(sizes: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Step 6's sizes as a table: one row per part and a total, float and quantized MB."""
    table = pd.DataFrame(sizes)
    table.loc["total"] = table.sum()
    table.index.name = "part"
    return table


def speed_table(results: dict[str, dict[str, float]], tokens: int) -> pd.DataFrame:
    """Step 7's results beside the tutorial's: a row per measure (size, loss, seconds), a column per model,
    ours on ``tokens`` test tokens then the tutorial's on its whole test split."""
    columns = {}
    for name in ("float", "quantized"):
        columns[f"{name}, here"] = [results[name][k] for k in TUTORIAL]
    for i, name in enumerate(("float", "quantized")):
        columns[f"{name}, tutorial"] = [TUTORIAL[k][i] for k in TUTORIAL]
    measures = ["size (MB)", f"loss ({tokens:,} tokens here)", f"seconds ({tokens:,} tokens here)"]
    return pd.DataFrame(columns, index=pd.Index(measures, name="measure"))


# --- the lessons --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Lesson:
    number: int  # 1-based, from the file's place in name order
    file: str
    title: str
    reads: tuple[str, ...]
    needs: dict[str, int]  # name -> the number of the earlier lesson that gives it
    gives: tuple[str, ...]
    timed: bool
    evaluates: tuple[str, ...]  # the models its code evaluates on the first `tokens` test tokens, in that order
    shows: str
    explain: str
    code: str  # what the card shows: the body of ``function``, less its closing return
    function: Callable[..., dict]
    notice: Callable[[dict], str]
    inputs: frozenset[str]  # the setup names it reads, itself or through the lessons it needs
    kept: bool  # a later lesson needs what it gives (a model, say): its run is kept as it is, not copied


@dataclass(frozen=True)
class LessonRun:
    """What a lesson's code printed, the values it gave (its ``GIVES``), and what to notice in them."""

    output: str
    values: dict
    notice: str


def _shown_code(path: Path, name: str = "lesson") -> str:
    """The body of the function ``name`` in ``path``, dedented, with the comments above its first line and without
    its closing ``return``."""
    source = path.read_text(encoding="utf-8")
    function = next((node for node in ast.parse(source).body
                     if isinstance(node, ast.FunctionDef) and node.name == name), None)
    if function is None:
        raise LessonError(f"{path.name} has no `def {name}(...)`")
    body, last = function.body[:-1], function.body[-1]
    if not (isinstance(last, ast.Return) and isinstance(last.value, ast.Dict)) or not body:
        raise LessonError(f"{path.name}: `{name}` must end with `return {{...}}` of what it GIVES, after its code")
    lines = source.splitlines(keepends=True)
    start = body[0].lineno - 1
    while start > function.lineno and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return textwrap.dedent("".join(lines[start:body[-1].end_lineno]))


def _load(path: Path) -> types.ModuleType:
    # A file name that starts with a digit is no Python identifier, so `import` cannot name it.
    spec = importlib.util.spec_from_file_location(f"{__name__}.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lesson(number: int, path: Path, earlier: list[Lesson]) -> Lesson:
    module = _load(path)
    missing = [name for name in ("TITLE", "READS", "GIVES", "SHOWS", "EXPLAIN", "lesson", "notice")
               if not hasattr(module, name)]
    if missing:
        raise LessonError(f"{path.name} does not define {', '.join(missing)}")
    reads, needs, gives = tuple(module.READS), tuple(getattr(module, "NEEDS", ())), tuple(module.GIVES)
    unknown = sorted(set(reads) - set(SETUP_NAMES))
    if unknown:
        raise LessonError(f"{path.name} READS {unknown}, which the setup does not have ({', '.join(SETUP_NAMES)})")
    givers = {}
    for name in needs:
        giver = next((lesson for lesson in reversed(earlier) if name in lesson.gives), None)
        if giver is None:
            raise LessonError(f"{path.name} NEEDS {name!r}, which no earlier lesson GIVES")
        givers[name] = giver.number
    parameters = list(inspect.signature(module.lesson).parameters)
    if sorted(parameters) != sorted(reads + needs):
        raise LessonError(f"{path.name}: `lesson` takes {parameters}; READS and NEEDS say {list(reads + needs)}")
    inputs = frozenset(reads).union(*(earlier[n - 1].inputs for n in givers.values()))
    evaluates = tuple(getattr(module, "EVALUATES", ()))
    if evaluates and not ({"corpus", "tokens"} <= set(reads) and set(evaluates) <= set(reads + needs)):
        raise LessonError(f"{path.name} EVALUATES {list(evaluates)}: each must be a name it READS or NEEDS, and it "
                          "must READ `corpus` and `tokens` (it evaluates the first `tokens` of the test split)")
    return Lesson(number=number, file=path.name, title=module.TITLE, reads=reads, needs=givers, gives=gives,
                  timed=bool(getattr(module, "TIMED", False)), evaluates=evaluates, shows=module.SHOWS,
                  explain=module.EXPLAIN,
                  code=_shown_code(path), function=module.lesson, notice=module.notice, inputs=inputs, kept=False)


def discover(folder: Path = FOLDER) -> list[Lesson]:
    """The lesson files of ``folder`` (``NN_name.py``), in name order, as lessons numbered from 1."""
    lessons: list[Lesson] = []
    for number, path in enumerate(sorted(p for p in folder.glob("*.py") if LESSON_FILE.fullmatch(p.name)), 1):
        lessons.append(_lesson(number, path, lessons))
    needed = {number for lesson in lessons for number in lesson.needs.values()}
    return [replace(lesson, kept=lesson.number in needed) for lesson in lessons]


def _call(lesson: Lesson, arguments: dict) -> tuple[str, dict]:
    """Run the lesson's function with its ``print`` writing into a buffer of this run's own.

    ``print`` is looked up in the function's globals, so a copy of them per run captures what it prints without
    touching ``sys.stdout``, which every thread (every session of the app) shares."""
    out = io.StringIO()

    def printed(*args, **kwargs) -> None:
        print(*args, **kwargs, file=out)

    function = lesson.function
    own = types.FunctionType(function.__code__, {**function.__globals__, "print": printed}, function.__name__,
                             function.__defaults__, function.__closure__)
    given = own(**arguments)
    if sorted(given) != sorted(lesson.gives):
        raise LessonError(f"{lesson.file} GIVES {list(lesson.gives)} but returned {list(given)}")
    return out.getvalue(), given


def lesson_arguments(number: int, names: dict, earlier: dict[int, dict] | None = None, *,
                     lessons: list[Lesson] | None = None) -> dict:
    """What lesson ``number``'s function is called with: its ``READS`` from ``names``, its ``NEEDS`` from what the
    lessons that give them gave (run first unless ``earlier`` holds it; ``earlier`` collects it)."""
    lessons = LESSONS if lessons is None else lessons
    if not 1 <= number <= len(lessons):
        raise ValueError(f"no lesson {number}; there are {len(lessons)}")
    earlier = {} if earlier is None else earlier
    lesson = lessons[number - 1]
    missing = [name for name in lesson.reads if name not in names]
    if missing:
        raise ValueError(f"lesson {number} ({lesson.title}) reads {', '.join(missing)}, which were not given")
    arguments = {name: names[name] for name in lesson.reads}
    for name, giver in lesson.needs.items():
        if giver not in earlier:
            earlier[giver] = run_lesson(giver, names, earlier, lessons=lessons).values
        arguments[name] = earlier[giver][name]
    return arguments


def estimate_seconds(lesson: Lesson, arguments: dict, probe_tokens: int = PROBE_TOKENS) -> dict[str, float]:
    """About how long each model the lesson ``EVALUATES`` takes on the first ``tokens`` of the test split here, on
    the threads in force: each is timed twice on its first ``probe_tokens`` (after one chunk to warm it up), and
    the faster time is scaled up (on a shared machine a moment's burst of other work slows one try, not the run)."""
    test = arguments["corpus"].test[:arguments["tokens"]]
    probe = test[:probe_tokens + 1]
    seconds = {}
    for name in lesson.evaluates:
        model = arguments[name]
        evaluate(model, probe, max_tokens=min(len(probe), 26))  # the first call of a model pays for its set-up
        per_token = min(timed.seconds / max(timed.tokens, 1) for timed in (evaluate(model, probe) for _ in range(2)))
        seconds[name] = per_token * max(len(test) - 1, 0)
    return seconds


def run_lesson(number: int, names: dict, earlier: dict[int, dict] | None = None, *,
               lessons: list[Lesson] | None = None) -> LessonRun:
    """Run lesson ``number`` (1-based) on ``names`` (those of ``SETUP_NAMES`` it reads).

    Lessons it needs are run first unless ``earlier`` already holds what they gave ({number: values}); ``earlier``
    collects it, so a caller can run step 5 once for steps 6 and 7.
    """
    lessons = LESSONS if lessons is None else lessons
    earlier = {} if earlier is None else earlier
    arguments = lesson_arguments(number, names, earlier, lessons=lessons)
    lesson = lessons[number - 1]
    output, given = _call(lesson, arguments)
    earlier[number] = given
    return LessonRun(output, given, lesson.notice({**arguments, **given}))


LESSONS = discover()
