"""The walkthrough taken home: a notebook and a script holding every lesson's code exactly as the cards show it.
Executed by a Jupyter kernel (nbclient) or run as a script from the repository's root, they print what the cards
print: the same figures ``run_lesson`` gives on the same model, corpus, seed and tokens."""
import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient

from wlm import cli
from wlm.checkpoint import load_model
from wlm.corpus import Corpus
from wlm.lessons import LESSONS, run_lesson, size_table, speed_table
from wlm.notebook import NOTEBOOK_FILE, SCRIPT_FILE, TABLES, cells, walkthrough_zip, write_walkthrough

from conftest import REPO

SEED, TOKENS = 3, 60  # the tiny test split has 80 tokens


@pytest.fixture(scope="module")
def tiny_assets(tiny_app, tmp_path_factory):
    """The tiny bundle and corpus laid out as the repository's assets/ folder is."""
    assets = tmp_path_factory.mktemp("tiny") / "assets"
    shutil.copytree(tiny_app["bundle"], assets / "wlm-lstm")
    shutil.copytree(tiny_app["data"], assets / "wikitext-2")
    return assets


def cards(assets, seed: int, tokens: int) -> dict[int, str]:
    """What each card's code prints, and the table after it, run here by ``run_lesson`` on the same inputs."""
    loaded = load_model(assets / "wlm-lstm")
    names = {"model": loaded.model, "loaded": loaded, "corpus": Corpus(assets / "wikitext-2"),
             "dictionary": loaded.dictionary, "seed": seed, "tokens": tokens}
    earlier: dict = {}
    printed = {}
    for number in range(1, len(LESSONS) + 1):
        run = run_lesson(number, names, earlier)
        printed[number] = run.output
        if number == 6:
            printed[number] += size_table(run.values["sizes"]).round(1).to_string() + "\n"
        if number == 7:
            printed[number] += speed_table(run.values["results"], tokens).round(3).to_string() + "\n"
    return printed


def steady(text: str) -> str:
    """Step 7's printout without its timings (seconds differ from run to run; sizes and losses do not)."""
    text = re.sub(r"'seconds': [0-9.e+-]+", "'seconds': ~", text)
    return re.sub(r"^(seconds \(.*?\)\s+)\S+\s+\S+", r"\1~ ~", text, flags=re.M)


def execute(path, cwd):
    notebook = nbformat.read(path, as_version=4)
    # The kernel runs in the repository's root folder, as a student's Jupyter opened there would.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def notebook_prints(notebook) -> dict[int, str]:
    """stdout of each step's cells (its code, then its table), from an executed notebook; no cell may fail."""
    printed: dict[int, str] = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
        lesson = cell.metadata["wlm"].get("lesson")
        if lesson:
            text = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
            printed[lesson] = printed.get(lesson, "") + text
    return printed


def assert_same_figures(got: dict[int, str], want: dict[int, str]) -> None:
    assert sorted(got) == sorted(want)
    for number in want:
        if number == 7:
            assert steady(got[number]) == steady(want[number])
        else:
            assert got[number] == want[number], number


def test_cells_hold_every_lesson_as_the_page_shows_it(tiny_assets):
    walkthrough = cells(tiny_assets, seed=SEED, tokens=TOKENS)
    lessons = [c for c in walkthrough if c.meta.get("role") == "lesson"]
    assert [c.source for c in lessons] == [lesson.code for lesson in LESSONS]
    headings = [c.source.splitlines()[0] for c in walkthrough if c.kind == "markdown"][1:]
    assert headings == [f"## Step {n} of {len(LESSONS)}: {lesson.title}" for n, lesson in enumerate(LESSONS, 1)]
    setup = walkthrough[1].source
    assert f"ASSETS = Path({str(tiny_assets)!r})" in setup and f"seed = {SEED}" in setup
    assert f"tokens = {TOKENS}" in setup
    assert sorted(c.meta["lesson"] for c in walkthrough if c.meta.get("role") == "table") == sorted(TABLES)


def test_notebook_runs_in_a_kernel_and_prints_what_the_cards_print(tiny_assets, tmp_path):
    paths = write_walkthrough(tmp_path, tiny_assets, seed=SEED, tokens=TOKENS)
    assert [p.name for p in paths] == [NOTEBOOK_FILE, SCRIPT_FILE]
    notebook = nbformat.read(paths[0], as_version=4)
    nbformat.validate(notebook)
    shown = [c.source for c in notebook.cells if c.cell_type == "code" and c.metadata["wlm"]["role"] == "lesson"]
    assert shown == [lesson.code.rstrip() for lesson in LESSONS]  # as the card's code block shows it
    assert_same_figures(notebook_prints(execute(paths[0], REPO)), cards(tiny_assets, SEED, TOKENS))


def test_script_runs_from_the_repository_root_and_prints_what_the_cards_print(tiny_assets, tmp_path):
    script = write_walkthrough(tmp_path, tiny_assets, seed=SEED, tokens=TOKENS)[1]
    # wlm is not installed and the script's own folder does not hold it: the first cell finds it in the folder the
    # script runs from.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    parts = re.split(r"^--- Step (\d+) of \d+: .*\n", proc.stdout, flags=re.M)
    got = {int(number): text for number, text in zip(parts[1::2], parts[2::2])}
    assert_same_figures(got, cards(tiny_assets, SEED, TOKENS))


def test_the_apps_zip_points_at_the_repositorys_assets_folder():
    with zipfile.ZipFile(io.BytesIO(walkthrough_zip(seed=5, tokens=2000))) as archive:
        assert sorted(archive.namelist()) == sorted([NOTEBOOK_FILE, SCRIPT_FILE])  # unpacked into a clone's root
        notebook = nbformat.reads(archive.read(NOTEBOOK_FILE).decode(), as_version=4)
        script = archive.read(SCRIPT_FILE).decode()
    setup = notebook.cells[1].source
    assert "ASSETS = Path('assets')" in setup and "seed = 5" in setup and "tokens = 2000" in setup
    assert "ASSETS = Path('assets')" in script
    compile(script, SCRIPT_FILE, "exec")  # a valid script, whatever the lessons hold


def test_cli_writes_both_and_refuses_bad_input_in_one_line(tiny_assets, tmp_path, capsys):
    assert cli.main(["notebook", "--out", str(tmp_path / "nb"), "--assets", str(tiny_assets)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(tmp_path / "nb" / NOTEBOOK_FILE), str(tmp_path / "nb" / SCRIPT_FILE)]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for args, message in ((["--out", str(a_file)], "is a file, not a folder"),
                          (["--out", str(tmp_path / "x"), "--assets", str(tmp_path)], "does not hold the model"),
                          (["--out", str(tmp_path / "x"), "--seed", "-1"], "the seed must be")):
        assert cli.main(["notebook", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_bundled_walkthrough_notebook_prints_what_the_cards_print(tmp_path):
    # As the app's download gives it: ASSETS = 'assets', run from the repository's root folder.
    path = tmp_path / NOTEBOOK_FILE
    path.write_bytes(zipfile.ZipFile(io.BytesIO(walkthrough_zip())).read(NOTEBOOK_FILE))
    start = time.perf_counter()
    notebook = execute(path, REPO)
    seconds = time.perf_counter() - start
    print(f"\nthe bundled walkthrough notebook ran in {seconds:.1f} s")
    assert_same_figures(notebook_prints(notebook), cards(REPO / "assets", 0, 1000))
