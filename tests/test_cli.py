import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, tiny_model
from served import free_port


def run(*args, env_extra=None, check_rc=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("WLM_DATA_DIR", None) if env_extra is None else None
    proc = subprocess.run([sys.executable, "-m", "wlm", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def test_compare_json_rows(tiny_dir):
    proc = run("compare", "--random-init", "--data", str(tiny_dir), "--max-tokens", "100",
               "--variants", "tutorial,float16", "--format", "json", check_rc=0)
    rows = json.loads(proc.stdout)
    assert [r["variant"] for r in rows] == ["fp32", "tutorial", "float16"]
    assert all(list(r) == ["variant", "size_mb", "loss", "ppl", "seconds", "tokens_per_s", "speedup"] for r in rows)
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["size_mb"] < rows[0]["size_mb"]
    assert "corpus" in proc.stderr  # messages go to stderr, the table alone to stdout


def test_compare_md_and_csv(tiny_dir):
    md = run("compare", "--random-init", "--data", str(tiny_dir), "--max-tokens", "60", check_rc=0).stdout
    # Markdown is for people: the plain names the app shows (one mapping, wlm.benchmark.COLUMN_NAMES).
    assert _header(md) == ["variant", "size (MB)", "loss", "perplexity", "seconds", "tokens/s", "speedup"]
    assert "tutorial" in md
    csv = run("compare", "--random-init", "--data", str(tiny_dir), "--max-tokens", "60", "--format", "csv",
              check_rc=0).stdout
    assert csv.splitlines()[0] == "variant,size_mb,loss,ppl,seconds,tokens_per_s,speedup"  # what scripts read


def _header(markdown: str) -> list[str]:
    """The column names of a markdown table's first line."""
    return [cell.strip() for cell in markdown.splitlines()[0].strip().strip("|").split("|")]


def test_every_markdown_header_is_a_plain_name_and_the_app_shows_the_same():
    from ui.glossary import name
    from wlm.benchmark import COLUMN_NAMES, COLUMNS, ENGINE_COLUMNS

    assert [COLUMN_NAMES[c] for c in ENGINE_COLUMNS] == ["variant", "engine", "size (MB)", "loss", "perplexity",
                                                        "seconds", "tokens/s", "speedup"]
    assert all(name(c) == COLUMN_NAMES[c] for c in COLUMNS)
    assert not [n for n in COLUMN_NAMES.values() if "_" in n]  # no code name left in what people read


def test_generate_and_evaluate_with_pth(tmp_path, tiny_dir, tiny_corpus):
    path = tmp_path / "m.pth"
    torch.save(tiny_model(len(tiny_corpus.dictionary)).state_dict(), path)
    out = run("generate", "--checkpoint", str(path), "--data", str(tiny_dir), "--words", "30", "--seed", "1",
              check_rc=0).stdout
    assert len(out.split()) >= 20 and "b'" not in out
    again = run("generate", "--checkpoint", str(path), "--data", str(tiny_dir), "--words", "30", "--seed", "1",
                check_rc=0).stdout
    assert out == again
    ev = json.loads(run("evaluate", "--checkpoint", str(path), "--data", str(tiny_dir), "--variant", "tutorial",
                        "--format", "json", check_rc=0).stdout)
    assert ev["variant"] == "tutorial" and ev["tokens"] == len(tiny_corpus.test) - 1 and ev["loss"] > 0
    fid = run("fidelity", "--checkpoint", str(path), "--data", str(tiny_dir), "--max-tokens", "50", check_rc=0).stdout
    assert "top1_agreement" in fid
    sqnr = fid[fid.index("\n|") + 1:]
    assert _header(sqnr) == ["part", "weight", "layer", "gate", "SQNR (dB)"]


def test_generate_compare_gives_both_texts_where_they_part_and_the_odds(tmp_path, tiny_dir, tiny_corpus):
    path = tmp_path / "m.pth"
    torch.save(tiny_model(len(tiny_corpus.dictionary)).state_dict(), path)
    common = ("--checkpoint", str(path), "--data", str(tiny_dir), "--words", "40", "--seed", "3")
    alone = {v: run("generate", *common, "--variant", v, check_rc=0).stdout.strip() for v in ("fp32", "tutorial")}
    row = json.loads(run("generate", *common, "--compare", "tutorial", "--format", "json", check_rc=0).stdout)
    assert row["variant"] == "fp32" and row["compare"] == "tutorial"
    assert row["text"] == alone["fp32"] and row["compare_text"] == alone["tutorial"]  # each text as written alone
    a, b = row["text"].split(), row["compare_text"].split()
    first = row["first_difference"]
    if first is None:
        assert row["agreed_words"] == 40
    else:
        assert row["agreed_words"] == first and len(row["same_pick"]) == first + 1
    assert 0.5 < row["mean_same_pick"] <= 1 and row["mean_same_pick"] == pytest.approx(
        sum(row["same_pick"]) / len(row["same_pick"]))
    assert a[:5] == b[:5]  # an int8 copy of the same model agrees on the first words
    text = run("generate", *common, "--compare", "tutorial", check_rc=0).stdout
    assert alone["fp32"] in text and alone["tutorial"] in text
    assert (f"agree for {row['agreed_words']} words, then part at word {first + 1}" if first is not None
            else f"none, the texts agree on all {row['agreed_words']} words") in text
    assert f"{100 * row['mean_same_pick']:.1f} % of the time" in text


@pytest.mark.parametrize("args, message", [
    (["compare", "--random-init", "--data", "/nonexistent/corpus"], "does not exist"),
    (["compare", "--random-init", "--variants", "int3"], "unknown variant"),
    (["compare", "--random-init", "--threads", "0"], "at least 1"),
    (["generate", "--words", "0"], "words must be between"),
    (["generate", "--words", "100000000"], "words must be between"),
    (["generate", "--temperature", "-1"], "temperature"),
    (["generate", "--compare", "int3"], "unknown variant 'int3'"),
    (["evaluate", "--checkpoint", "/nonexistent.pth"], "does not exist"),
])
def test_bad_input_exits_2_without_traceback(args, message, tiny_dir):
    if "--random-init" in args and "--data" not in args:
        args = [*args, "--data", str(tiny_dir)]
    if args[0] == "evaluate":
        args = [*args, "--data", str(tiny_dir)]
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_max_tokens_beyond_split_is_clamped_and_said(tiny_dir):
    proc = run("compare", "--random-init", "--data", str(tiny_dir), "--max-tokens", "99999999", check_rc=0)
    assert "more than the split" in proc.stderr


def test_wrong_vocab_checkpoint(tmp_path, tiny_dir):
    path = tmp_path / "m.pth"
    torch.save(tiny_model(7).state_dict(), path)
    proc = run("evaluate", "--checkpoint", str(path), "--data", str(tiny_dir))
    assert proc.returncode == 2 and "output words but the corpus" in proc.stderr and "Traceback" not in proc.stderr


def test_train_then_bundle(tmp_path, tiny_dir, tiny_corpus):
    run_dir = tmp_path / "run"
    proc = run("train", "--data", str(tiny_dir), "--epochs", "1", "--batch-size", "2", "--bptt", "6",
               "--window", "5", "--threads", "1", "--out", str(run_dir), check_rc=0)
    report = json.loads(proc.stdout)
    assert report["epochs_done"] == 1 and report["history"][0]["valid_loss"] > 0
    assert report["windows"][-1][1] < report["windows"][0][1]
    bundle = tmp_path / "bundle"
    card = json.loads(run("bundle", "--data", str(tiny_dir), "--run", str(run_dir), "--out", str(bundle),
                          check_rc=0).stdout)
    assert {"test_loss_fp32", "test_loss_tutorial", "test_loss_fp32_first_5000", "weights_sha256"} <= set(card)
    assert card["epochs"] == 1 and card["recipe"]["name"] == "adamw"
    # The bundle brings its vocabulary: generation needs no corpus.
    text = run("generate", "--checkpoint", str(bundle), "--words", "60", "--seed", "2",
               env_extra={"WLM_DATA_DIR": str(tmp_path / "absent")}, check_rc=0).stdout
    assert len(text.split()) >= 10
    assert all(w in tiny_corpus.dictionary.word2idx for w in text.split())


def test_corpus_command(tiny_dir):
    stats = json.loads(run("corpus", "--data", str(tiny_dir), "--reference", check_rc=0).stdout)
    assert stats["same_ids"] is True and stats["vocab"] > 10 and stats["split_seconds"] >= 0
    again = json.loads(run("corpus", "--data", str(tiny_dir), check_rc=0).stdout)
    assert again["from_cache"] is True and again["test_tokens"] == stats["test_tokens"]


def test_download_offline_message(tmp_path):
    # Offline, whatever the machine running the tests can reach: every request goes to a proxy nobody listens on.
    dead = f"http://127.0.0.1:{free_port()}"
    offline = {"http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
               "no_proxy": "", "NO_PROXY": ""}
    proc = run("download", "--dest", str(tmp_path / "wt2"), env_extra=offline)
    # The message names both mirrors it tried and says what to do instead, in one line, with status 2.
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: could not download https://"), error
    assert error.count("could not download") == 2 and "--data DIR" in error and "WLM_DATA_DIR" in error
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its half-made temporary one is left


def test_commands_find_the_bundled_corpus_with_no_option():
    # No --data, no WLM_DATA_DIR, no ./data: the copy in assets/ is used and named.
    proc = run("compare", "--max-tokens", "300", "--format", "json", check_rc=0)
    rows = json.loads(proc.stdout)
    assert [r["variant"] for r in rows] == ["fp32", "tutorial"] and rows[0]["size_mb"] > 100
    assert "corpus: Wikitext-2, bundled (33,278 words" in proc.stderr
    stats = json.loads(run("corpus", check_rc=0).stdout)
    assert stats["corpus"] == "Wikitext-2, bundled" and stats["official_wikitext2"] is True
    assert (stats["vocab"], stats["test_tokens"]) == (33278, 245569)


def test_corpus_reports_an_edited_split(tmp_path):
    import shutil

    from wlm.corpus import BUNDLED_DATA_DIR

    copy = tmp_path / "wt2"
    shutil.copytree(BUNDLED_DATA_DIR, copy)
    (copy / "valid.txt").write_text((copy / "valid.txt").read_text()[:50_000])
    stats = json.loads(run("corpus", "--data", str(copy), check_rc=0).stdout)
    assert stats["official_wikitext2"] is False and stats["differs_from_official"] == ["valid"]
    assert stats["corpus"].startswith("Wikitext-2 with edited valid.txt")
    proc = run("evaluate", "--data", str(copy), "--max-tokens", "100", check_rc=0)
    assert "valid differ from the official Wikitext-2 files" in proc.stderr


@pytest.mark.parametrize("setup", ["missing", "no-train", "not-utf8"])
def test_bad_data_dir_from_the_environment(tmp_path, setup):
    from conftest import write_corpus

    path = tmp_path / "wt2"
    if setup != "missing":
        write_corpus(path)
    if setup == "no-train":
        (path / "train.txt").unlink()
    if setup == "not-utf8":
        (path / "train.txt").write_bytes(b"caf\xe9\n")
    proc = run("evaluate", "--max-tokens", "100", env_extra={"WLM_DATA_DIR": str(path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and str(path) in proc.stderr


@pytest.mark.parametrize("kind", ["text", "json", "empty", "random bytes", "pickled list", "torch.save of a tensor",
                                  "cut-off zip", "cut-off safetensors", "wrong keys", "folder"])
def test_not_a_checkpoint_exits_2_naming_the_file(kind, tmp_path, tiny_dir):
    from test_checkpoint import NOT_CHECKPOINTS

    if kind == "folder":
        path = tmp_path / "some-folder"
        path.mkdir()
    else:
        name, data, _ = NOT_CHECKPOINTS[kind]
        path = tmp_path / name
        path.write_bytes(data)
    proc = run("evaluate", "--checkpoint", str(path), "--data", str(tiny_dir))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and str(path) in error[0] and "a checkpoint is a bundle folder" in error[0], proc.stderr
