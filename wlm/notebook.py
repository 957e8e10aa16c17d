"""The walkthrough to take home: a Jupyter notebook and the same lessons as a plain Python script.

Both hold a first cell that loads the model and the corpus from one folder (``ASSETS``, the repository's
``assets/`` unless told otherwise), then every lesson of ``wlm.lessons`` under its title and its ``EXPLAIN``, its
code exactly as the Walkthrough tab shows it. Run in order they print what the cards print: the card's notice is
computed from those numbers, so here each step says in words what to look at instead.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .assets import CORPUS_FOLDER, MODEL_FOLDER
from .errors import WlmError
from .lessons import LESSON_TOKENS, LESSONS
from .out_files import write_files, zip_bytes

NOTEBOOK_FILE, SCRIPT_FILE = "wlm-walkthrough.ipynb", "wlm-walkthrough.py"
ZIP_FILE = "wlm-walkthrough.zip"
# As a clone has it, relative to the repository's root: what a notebook downloaded from the app points at.
REPOSITORY_ASSETS = "assets"

# After a lesson whose card shows a table, a cell that prints the same table, by what the lesson ``SHOWS``.
TABLE_CELLS = {
    "sizes": "from wlm.lessons import size_table\n\nprint(size_table(sizes).round(1).to_string())  # MB\n",
    "speed": "from wlm.lessons import speed_table\n\nprint(speed_table(results, tokens).round(3).to_string())\n",
}
TABLES = {lesson.number: TABLE_CELLS[lesson.shows] for lesson in LESSONS if lesson.shows in TABLE_CELLS}

INTRO = """\
# Dynamic quantization on an LSTM word language model

PyTorch's tutorial in {count} steps, as the Walkthrough tab of wlm's app shows them: each step's code is exactly \
the code on its card, and prints what the card prints. Run the cells in order (steps 6 and 7 measure the \
`quantized` model that step 5 makes).

The first cell loads the model and the corpus from `ASSETS`, the `assets/` folder of the wlm repository; run this \
from the repository's root folder, or set `ASSETS` to where that folder is. It needs what \
`pip install -r requirements.txt` installs, and nothing else.
"""

SETUP = """\
import sys
from pathlib import Path

ASSETS = Path({assets!r})  # the wlm repository's assets/ folder: change it to point elsewhere

try:
    import wlm  # installed (pip install .), or beside this notebook
except ImportError:  # a script has its own folder on the path, not the one it runs from
    sys.path[:0] = [str(Path.cwd()), str(ASSETS.resolve().parent)]  # the repository's root, or beside ASSETS

from wlm.checkpoint import load_model
from wlm.corpus import Corpus

loaded = load_model(ASSETS / "{model}")  # weights, vocabulary and card
model, dictionary = loaded.model, loaded.dictionary
corpus = Corpus(ASSETS / "{corpus}")
seed = {seed}  # step 4 writes from it
tokens = {tokens}  # test tokens step 7 evaluates
print(f"model: {{loaded.source}}; corpus: {{corpus.label}}")
"""


@dataclass(frozen=True)
class Cell:
    kind: str  # "markdown" or "code"
    source: str
    meta: dict = field(default_factory=dict)  # for code: {"role": "setup" | "lesson" | "table", "lesson": n}


def cells(assets: str | Path = REPOSITORY_ASSETS, *, seed: int = 0, tokens: int = LESSON_TOKENS) -> list[Cell]:
    """The walkthrough's cells, reading the model and corpus from ``assets`` (written into the first cell)."""
    if not isinstance(seed, int) or seed < 0:
        raise WlmError(f"the seed must be a whole number of at least 0, got {seed!r}")
    if not isinstance(tokens, int) or tokens < 2:
        raise WlmError(f"step 7 needs at least 2 test tokens (one input, one target), got {tokens!r}")
    setup = SETUP.format(assets=str(assets), model=MODEL_FOLDER, corpus=CORPUS_FOLDER, seed=seed, tokens=tokens)
    out = [Cell("markdown", INTRO.format(count=len(LESSONS))), Cell("code", setup, {"role": "setup"})]
    for number, lesson in enumerate(LESSONS, start=1):
        uses = "".join(f" It uses `{name}`, which step {giver} made." for name, giver in lesson.needs.items())
        out.append(Cell("markdown", f"## Step {number} of {len(LESSONS)}: {lesson.title}\n\n{lesson.explain}{uses}"))
        out.append(Cell("code", lesson.code, {"role": "lesson", "lesson": number}))
        if number in TABLES:
            out.append(Cell("code", TABLES[number], {"role": "table", "lesson": number}))
    return out


def _require_nbformat():
    try:
        import nbformat
    except ImportError:
        raise WlmError("writing the notebook needs the nbformat package; install it with `pip install nbformat` "
                       "or `pip install -r requirements.txt`") from None
    return nbformat


def notebook_text(walkthrough: list[Cell]) -> str:
    """The cells as a Jupyter notebook (nbformat 4, the Python 3 kernel), checked against the format's schema."""
    nbformat = _require_nbformat()
    v4 = nbformat.v4
    nb = v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    for cell in walkthrough:
        # Sources without their last line break, as Jupyter saves them.
        source = cell.source.rstrip("\n")
        nb.cells.append(v4.new_markdown_cell(source) if cell.kind == "markdown" else
                        v4.new_code_cell(source, metadata={"wlm": cell.meta}))
    nbformat.validate(nb)
    return nbformat.writes(nb)


def script_text(walkthrough: list[Cell]) -> str:
    """The cells as one Python script: markdown as comments, cells marked ``# %%`` (editors run them one by one),
    and a line printed before each step so that its output can be told apart in a terminal."""
    parts = ['"""The wlm walkthrough as a script: run it from the repository\'s root folder with\n'
             f'python {SCRIPT_FILE} (or set ASSETS below to where the repository\'s assets/ folder is)."""\n']
    for cell in walkthrough:
        if cell.kind == "markdown":
            lines = [wrapped for line in cell.source.rstrip("\n").splitlines()
                     for wrapped in (textwrap.wrap(line, 116, break_on_hyphens=False) or [""])]
            parts.append("# %% [markdown]\n" + "".join(f"# {line}".rstrip() + "\n" for line in lines))
        elif cell.meta.get("role") == "lesson":
            number = cell.meta["lesson"]
            header = f"--- Step {number} of {len(LESSONS)}: {LESSONS[number - 1].title}"
            parts.append(f"# %%\nprint({header!r})\n{cell.source}")
        else:
            parts.append(f"# %%\n{cell.source}")
    return "\n".join(parts)


def walkthrough_files(assets: str | Path = REPOSITORY_ASSETS, *, seed: int = 0,
                      tokens: int = LESSON_TOKENS) -> dict[str, bytes]:
    """{file name: contents} of the notebook and the script."""
    walkthrough = cells(assets, seed=seed, tokens=tokens)
    return {NOTEBOOK_FILE: notebook_text(walkthrough).encode("utf-8"),
            SCRIPT_FILE: script_text(walkthrough).encode("utf-8")}


def write_walkthrough(out: str | Path, assets: str | Path, *, seed: int = 0,
                      tokens: int = LESSON_TOKENS) -> list[Path]:
    """Write the notebook and the script into the folder ``out``; returns their paths."""
    return write_files(out, walkthrough_files(assets, seed=seed, tokens=tokens))


def walkthrough_zip(assets: str | Path = REPOSITORY_ASSETS, *, seed: int = 0, tokens: int = LESSON_TOKENS) -> bytes:
    """The notebook and the script in one zip (the Walkthrough tab's download), at its top level: unpacked into a
    clone's root folder, both find ``assets/`` where they run (Jupyter runs a notebook in its own folder)."""
    return zip_bytes(walkthrough_files(assets, seed=seed, tokens=tokens))


def check_assets(assets: Path) -> Path:
    """``assets`` as an absolute path, once it holds the model bundle and the corpus the first cell loads."""
    for folder, holds, needed in ((MODEL_FOLDER, "the model bundle", "model.safetensors"),
                                  (CORPUS_FOLDER, "the corpus", "train.txt")):
        if not (assets / folder / needed).is_file():
            raise WlmError(f"{assets / folder} does not hold {holds} ({needed} is missing); pass --assets DIR, a "
                           f"folder holding {MODEL_FOLDER}/ and {CORPUS_FOLDER}/ as the repository's assets/ does")
    return assets.resolve()
