"""``pip install .`` gives the ``wlm`` command, and it works from any folder: the bundled model and corpus travel
inside the installed package. Installed offline into a throwaway virtual environment that sees this interpreter's
packages (so torch is not installed again), from a copy of the repository (an in-tree build would leave build/
and wlm.egg-info/ behind in the working tree)."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(REPO / name, source / name)
    for folder in ("wlm", "assets"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    # Without a pip of its own: the one ensurepip would put there brings setuptools 65, which (without the wheel
    # package, offline) cannot build a wheel and would shadow this interpreter's newer setuptools. `python -m pip`
    # then finds this interpreter's pip, which installs into the environment it runs in.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=300)
    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "--disable-pip-version-check", str(source)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WLM_MODEL", "WLM_DATA_DIR")}
    return {"bin": venv / "bin", "cwd": elsewhere, "env": env}


def wlm(installed, *args, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([installed["bin"] / "wlm", *args], capture_output=True, text=True, cwd=installed["cwd"],
                          env=installed["env"], timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_the_command_is_installed_and_names_itself(installed):
    help_text = wlm(installed, "--help").stdout
    assert help_text.startswith("usage: wlm ") and "notebook" in help_text and "export" in help_text
    where = subprocess.run([installed["bin"] / "python", "-c", "import wlm; print(wlm.__file__)"], text=True,
                           capture_output=True, cwd=installed["cwd"], env=installed["env"], check=True).stdout
    assert str(installed["bin"].parent) in where  # the installed copy, not the repository's


def test_the_bundled_corpus_and_model_are_found_from_any_folder(installed):
    assert '"corpus": "Wikitext-2, bundled"' in wlm(installed, "corpus").stdout
    out = installed["cwd"] / "onnx"
    printed = wlm(installed, "export", "--engine", "onnxruntime", "--out", str(out)).stdout.split()
    assert [p.rsplit("/", 1)[1] for p in printed] == ["model.int8.onnx", "vocab.txt", "README.md"]
    assert (out / "model.int8.onnx").stat().st_size > 20e6


def test_the_notebooks_script_runs_on_the_installed_assets(installed):
    folder = installed["cwd"] / "walkthrough"
    wlm(installed, "notebook", "--out", str(folder), "--tokens", "200")
    proc = subprocess.run([installed["bin"] / "python", str(folder / "wlm-walkthrough.py")], capture_output=True,
                          text=True, cwd=installed["cwd"], env=installed["env"], timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "33,278 words in the vocabulary" in proc.stdout and "--- Step 8 of 8" in proc.stdout
