"""The model taken home for ONNX Runtime: ``python -m wlm export`` writes the .onnx file, its vocabulary and a README
whose lines run with numpy and onnxruntime alone. Read by a process that cannot import wlm (``python -I`` from an
empty folder), the file gives the loss and the greedy text that wlm's harness gives with ONNX Runtime's int8 model."""
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from wlm import cli
from wlm.checkpoint import load_model
from wlm.evaluate import evaluate
from wlm.generate import generate
from wlm.onnx_engine import onnx_model
from wlm.onnx_export import README_FILE, VOCAB_FILE, export_zip, model_file, readme_code, zip_folder

from test_cli import run

TOKENS, BPTT = 1000, 25

# Everything wlm's harness does, in numpy and onnxruntime only: the tutorial's evaluation (batch 1, chunks of 25,
# the state carried), then greedy words after a prompt (read at once, then a word at a time, as wlm.generate does).
PROBE = r'''
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

folder, variant, ids_file, prompt, words = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
session = ort.InferenceSession(str(folder / f"model.{variant}.onnx"))
vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
layers, _, hidden = session.get_inputs()[1].shape
zeros = np.zeros((layers, 1, hidden), dtype=np.float32)


def step(x, h, c):
    return session.run(["logits", "hn", "cn"], {"input": x.reshape(-1, 1), "h0": h, "c0": c})


ids = np.load(ids_file)
h, c, total, scored = zeros, zeros, 0.0, 0
for i in range(0, len(ids) - 1, 25):
    n = min(25, len(ids) - 1 - i)
    logits, h, c = step(ids[i:i + n], h, c)
    z = logits[:, 0].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    total -= log_p[np.arange(n), ids[i + 1:i + 1 + n]].sum()
    scored += n

word_id = {w: i for i, w in enumerate(vocab)}
logits, h, c = step(np.array([word_id[w] for w in prompt.split()], dtype=np.int64), zeros, zeros)
text = []
for _ in range(words):
    text.append(int(logits[-1, 0].argmax()))
    logits, h, c = step(np.array([text[-1]], dtype=np.int64), h, c)
print(json.dumps({"loss": total / scored, "tokens": scored, "text": [vocab[i] for i in text],
                  "wlm_importable": importlib.util.find_spec("wlm") is not None,
                  "torch_loaded": "torch" in sys.modules}))
'''


def isolated(script: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``python -I``: no PYTHONPATH, no user site, not even the script's folder on the path — wlm cannot load."""
    proc = subprocess.run([sys.executable, "-I", str(script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def check_against_wlm(folder: Path, model, dictionary, test_ids: torch.Tensor, prompt: str, tmp_path: Path):
    ids = test_ids[:TOKENS]
    np.save(tmp_path / "ids.npy", ids.numpy())
    (tmp_path / "probe.py").write_text(PROBE)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    got = json.loads(isolated(tmp_path / "probe.py", folder, "int8", tmp_path / "ids.npy", prompt, 12,
                              cwd=empty).stdout)
    assert not got["wlm_importable"] and not got["torch_loaded"]
    ort_int8 = onnx_model(model, "int8")
    want = evaluate(ort_int8, ids, bptt=BPTT)
    assert got["tokens"] == want.tokens == len(ids) - 1
    assert abs(got["loss"] - want.loss) < 1e-4, (got["loss"], want.loss)
    greedy = list(generate(ort_int8, dictionary, words=12, temperature=0, prompt=prompt))
    assert got["text"] == greedy
    return got["loss"], want.loss


def check_readme_runs(folder: Path, model, dictionary, prompt: str, tmp_path: Path) -> None:
    """The README's lines, saved as it says and run beside the files, print the ten likeliest next words with the
    probabilities ONNX Runtime's int8 model gives them through wlm."""
    script = folder / "next_words.py"
    script.write_text(readme_code((folder / README_FILE).read_text(encoding="utf-8")))
    printed = isolated(script, *prompt.split(), cwd=folder).stdout.splitlines()
    assert len(printed) == min(10, len(dictionary))
    ids = torch.tensor(dictionary.encode(prompt.split())[0]).view(-1, 1)
    ort_int8 = onnx_model(model, "int8")
    logits, _ = ort_int8(ids, ort_int8.init_hidden(1))
    probs = torch.softmax(logits[-1, 0].double(), dim=0)
    for line in printed:
        p, word = line.split("  ", 1)
        assert abs(float(p) - probs[dictionary.word2idx[word]].item()) < 6e-5, line
    assert [line.split("  ", 1)[1] for line in printed][0] == dictionary.idx2word[int(probs.argmax())]


def test_export_runs_without_wlm_and_agrees_with_wlms_onnx_runtime(tiny_app, tmp_path):
    out = tmp_path / "export"
    proc = run("export", "--engine", "onnxruntime", "--variant", "int8", "--checkpoint", str(tiny_app["bundle"]),
               "--out", str(out), check_rc=0)
    assert proc.stdout.splitlines() == [str(out / name) for name in (model_file("int8"), VOCAB_FILE, README_FILE)]
    loaded = load_model(tiny_app["bundle"])
    vocab = (out / VOCAB_FILE).read_text(encoding="utf-8").splitlines()
    assert vocab == loaded.dictionary.idx2word  # one word a line, in id order
    check_against_wlm(out, loaded.model, loaded.dictionary, tiny_app["corpus"].test, "the cat sat on", tmp_path)
    check_readme_runs(out, loaded.model, loaded.dictionary, "the dog sat on the", tmp_path)


def test_fp32_variant_and_the_zip_hold_the_same_files(tiny_app, tmp_path):
    out = tmp_path / "fp32"
    run("export", "--variant", "fp32", "--checkpoint", str(tiny_app["bundle"]), "--out", str(out), check_rc=0)
    assert sorted(p.name for p in out.iterdir()) == sorted([model_file("fp32"), VOCAB_FILE, README_FILE])
    loaded = load_model(tiny_app["bundle"])
    with zipfile.ZipFile(io.BytesIO(export_zip(loaded.model, loaded.dictionary, "fp32"))) as archive:
        folder = zip_folder("fp32")
        assert sorted(archive.namelist()) == sorted(f"{folder}/{p.name}" for p in out.iterdir())
        for path in out.iterdir():
            assert archive.read(f"{folder}/{path.name}") == path.read_bytes(), path.name
    readme = (out / README_FILE).read_text()
    assert "fp32" in readme and "model.fp32.onnx" in readme and "import torch" not in readme


def test_export_again_replaces_its_files(tiny_app, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    (out / VOCAB_FILE).write_text("stale\n")
    (out / "notes.txt").write_text("mine")
    run("export", "--checkpoint", str(tiny_app["bundle"]), "--out", str(out), check_rc=0)
    assert (out / VOCAB_FILE).read_text() != "stale\n" and (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial file left behind


def _unwritable(tmp_path: Path) -> Path:
    import os

    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "out"
    # root writes anywhere on a normal file system; sysfs refuses new folders even to root
    candidate = Path("/sys/wlm-export-test")
    try:
        candidate.mkdir()
    except OSError:
        return candidate
    candidate.rmdir()
    pytest.skip("no folder here refuses to be written")


@pytest.mark.parametrize("case", ["file", "under a file", "unwritable", "variant", "engine", "folder in the way"])
def test_bad_input_is_one_line_and_exit_2(case, tiny_app, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out, extra, message = tmp_path / "out", [], ""
    if case == "file":
        out, message = a_file, "is a file, not a folder"
    elif case == "under a file":
        out, message = a_file / "out", f"{a_file} is a file, not a folder"
    elif case == "unwritable":
        out, message = _unwritable(tmp_path), "cannot create that folder"
    elif case == "variant":
        extra, message = ["--variant", "int4"], "unknown variant 'int4' for onnxruntime; choose from fp32, int8"
    elif case == "engine":
        extra, message = ["--engine", "tensorrt"], "cannot export for engine 'tensorrt'; choose from onnxruntime"
    else:
        (out / model_file("int8")).mkdir(parents=True)
        message = "is in the way of the file model.int8.onnx"
    # In this process (a subprocess per case costs seconds of imports): main's handling is what the command runs.
    assert cli.main(["export", "--checkpoint", str(tiny_app["bundle"]), "--out", str(out), *extra]) == 2
    printed = capsys.readouterr()
    errors = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], printed.err
    assert "Traceback" not in printed.err and printed.out == ""
    assert printed.err.splitlines() == errors  # the folder is checked before the model loads: nothing else


@pytest.mark.slow
def test_bundled_model_export_agrees_with_wlm(real_corpus, tmp_path):
    out = tmp_path / "export"
    run("export", "--out", str(out), check_rc=0)  # the bundled model, int8 by default
    loaded = load_model()
    size = (out / model_file("int8")).stat().st_size
    assert 25e6 < size < 32e6  # int8 weights, the embedding included (fp32 is 114 MB)
    got, want = check_against_wlm(out, loaded.model, loaded.dictionary, real_corpus.test, "the meaning of life is",
                                  tmp_path)
    print(f"\nint8 file {size:,} bytes; loss on the first {TOKENS:,} test tokens: numpy {got:.7f}, wlm {want:.7f}, "
          f"difference {abs(got - want):.2e}")
    check_readme_runs(out, loaded.model, loaded.dictionary, "the meaning of life is", tmp_path)
