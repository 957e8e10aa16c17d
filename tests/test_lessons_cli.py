import json

import pytest
import torch

from conftest import tiny_model
from test_cli import run


@pytest.fixture
def tiny_pth(tmp_path, tiny_corpus):
    path = tmp_path / "m.pth"
    torch.save(tiny_model(len(tiny_corpus.dictionary)).state_dict(), path)
    return str(path)


def test_inspect_text_and_json(tiny_pth, tiny_dir):
    text = run("inspect", "--checkpoint", tiny_pth, "--data", str(tiny_dir), "--prompt", "the cat sat",
               "--prompt", "a dog", check_rc=0).stdout
    for stage in ("1. float activation", "2. run-time scale", "3. activation as unsigned", "4. int8 weights",
                  "5. int32 accumulation", "6. against the float layer", "next-word probabilities"):
        assert stage in text
    assert "range 0-127" in text and "'dog'" in text
    out = json.loads(run("inspect", "--checkpoint", tiny_pth, "--data", str(tiny_dir), "--layer", "rnn.weight_hh_l1",
                         "--position", "7", "--prompt", "the cat", "--per-channel", "--format", "json",
                         check_rc=0).stdout)
    assert out["layer"] == "rnn.weight_hh_l1" and out["per_channel"] and out["moved"] is None
    assert out["source"] == "test position 7" and len(out["scales"]) == 2
    assert 0 <= min(out["x_codes"]) and max(out["x_codes"]) <= 127 and out["sqnr_db"] > 10


def test_bits_sweep_json(tiny_pth, tiny_dir):
    proc = run("bits", "--checkpoint", tiny_pth, "--data", str(tiny_dir), "--bits", "8,3", "--max-tokens", "50",
               "--format", "json", check_rc=0)
    rows = json.loads(proc.stdout)
    assert [(r["scheme"], r["bits"]) for r in rows] == [("float", 32), ("real int8", 8), ("per-tensor", 8),
                                                         ("per-tensor", 3), ("per-row", 8), ("per-row", 3),
                                                         ("per-group", 8), ("per-group", 3)]
    assert "simulated" in proc.stderr and "about" in proc.stderr and "nats" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["bits", "--bits", "8,1"], "bits must be"),
    (["bits", "--bits", "eight"], "whole numbers"),
    (["bits", "--schemes", "per-column"], "unknown scheme"),
    (["inspect", "--layer", "rnn.weight_ih_l7"], "unknown layer"),
    (["inspect", "--prompt", " "], "prompt is empty"),
    (["inspect", "--position", "99999"], "position must be"),
])
def test_bad_input_exits_2(tiny_pth, tiny_dir, args, message):
    proc = run(*args, "--checkpoint", tiny_pth, "--data", str(tiny_dir), check_rc=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr
