"""Training's parts and options: the learning-rate schedule, the LSTM initialisations, and `wlm train`'s --probe,
--time-limit and --resume, run as a user runs them (the tutorial's architecture on the tiny corpus, a few batches)."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from wlm.errors import WlmError
from wlm.train import LSTM_INITS, init_lstm, recipe_with, scheduled_lr

from conftest import REPO

# --- scheduled_lr ---------------------------------------------------------------------------------------------


def test_warm_up_climbs_linearly_to_the_peak():
    recipe = recipe_with("adamw", lr=1e-2, warmup_batches=10)
    assert [scheduled_lr(recipe, step, 100, 0.0) for step in range(10)] == pytest.approx(
        [1e-2 * k / 10 for k in range(1, 11)])


def test_cosine_falls_from_the_peak_to_the_floor_and_stays_there():
    recipe = recipe_with("adamw", lr=1e-2, warmup_batches=10, final_lr_frac=0.05)
    floor, total = 1e-2 * 0.05, 110  # 100 steps of decay after the warm-up
    assert scheduled_lr(recipe, 10, total, 0.0) == pytest.approx(1e-2)  # the decay starts at the peak
    assert scheduled_lr(recipe, 60, total, 0.0) == pytest.approx((1e-2 + floor) / 2)  # half way: half way down
    assert scheduled_lr(recipe, 35, total, 0.0) == pytest.approx(floor + (1e-2 - floor) * (1 + math.sqrt(0.5)) / 2)
    assert scheduled_lr(recipe, total, total, 0.0) == pytest.approx(floor)
    assert scheduled_lr(recipe, total + 50, total, 0.0) == pytest.approx(floor)  # never below the floor
    lrs = [scheduled_lr(recipe, step, total, 0.0) for step in range(10, total + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_no_warm_up_starts_at_the_peak():
    recipe = recipe_with("adamw", lr=2e-3, warmup_batches=0)
    assert scheduled_lr(recipe, 0, 50, 0.0) == pytest.approx(2e-3)


def test_the_plateau_schedule_uses_the_current_plateau_rate():
    recipe = recipe_with("examples")  # the seed's: lr 20, divided by 4 when validation stalls
    assert recipe.schedule == "plateau"
    assert [scheduled_lr(recipe, step, 1000, lr) for step, lr in ((0, 20.0), (500, 5.0), (999, 1.25))] == [
        20.0, 5.0, 1.25]


# --- init_lstm ------------------------------------------------------------------------------------------------

def _lstm(seed: int = 0) -> nn.LSTM:
    torch.manual_seed(seed)
    return nn.LSTM(16, 12, num_layers=3)


def test_default_init_leaves_pytorchs_own():
    rnn, fresh = _lstm(), _lstm()
    init_lstm(rnn, "default")
    assert all(torch.equal(a, b) for a, b in zip(rnn.parameters(), fresh.parameters()))
    bound = 1 / math.sqrt(12)  # PyTorch's uniform(-1/sqrt(hidden), 1/sqrt(hidden))
    assert all(float(p.abs().max()) <= bound for p in rnn.parameters())


def test_uniform_init_spreads_every_parameter_over_plus_minus_0_3():
    rnn = _lstm()
    init_lstm(rnn, "uniform0.3")
    values = torch.cat([p.detach().reshape(-1) for p in rnn.parameters()])
    assert float(values.abs().max()) <= 0.3 and float(values.abs().max()) > 0.29
    assert float(values.std()) == pytest.approx(0.3 / math.sqrt(3), rel=0.05)  # the uniform's spread
    assert abs(float(values.mean())) < 0.01


def test_orthogonal_init_gives_orthogonal_gates_unit_gain_inputs_and_zero_biases():
    rnn = _lstm(1)
    init_lstm(rnn, "orthogonal")
    h = rnn.hidden_size
    for name, p in rnn.named_parameters():
        p = p.detach()
        if name.startswith("weight_hh"):
            for gate in p.split(h):
                assert torch.allclose(gate.T @ gate, torch.eye(h), atol=1e-5), name
        elif name.startswith("weight_ih"):
            assert float(p.std()) == pytest.approx(1 / math.sqrt(p.shape[1]), rel=0.15), name
        else:
            assert torch.equal(p, torch.zeros_like(p)), name


@pytest.mark.parametrize("how", LSTM_INITS)
def test_a_forget_bias_sets_only_the_forget_gates_input_bias(how):
    plain, biased = _lstm(2), _lstm(2)
    for rnn, forget_bias in ((plain, 0.0), (biased, 1.5)):
        torch.manual_seed(7)  # the same draws for both
        init_lstm(rnn, how, forget_bias=forget_bias)
    h = plain.hidden_size
    for (name, a), b in zip(plain.named_parameters(), biased.parameters()):
        if name.startswith("bias_ih"):
            assert torch.equal(b[h:2 * h], torch.full((h,), 1.5)), name  # the forget gate, PyTorch's second block
            assert torch.equal(torch.cat([b[:h], b[2 * h:]]), torch.cat([a[:h], a[2 * h:]])), name
        else:
            assert torch.equal(a, b), name


def test_an_unknown_init_is_refused():
    with pytest.raises(WlmError, match="unknown LSTM init 'xavier'; choose one of default, uniform0.3, orthogonal"):
        init_lstm(_lstm(), "xavier")


# --- `wlm train` --probe, --time-limit, --resume ----------------------------------------------------------------

# The tutorial's architecture on the tiny corpus: 500 train tokens in 4 streams of 125, chunks of 8: 16 batches.
SMALL = ["--batch-size", "4", "--bptt", "8", "--epochs", "2", "--warmup-batches", "3", "--threads", "1",
         "--window", "4", "--seed", "5"]
BATCHES = math.ceil((500 // 4 - 1) / 8)


def _train(tiny_dir, out, *options) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-m", "wlm", "train", "--data", str(tiny_dir), "--out", str(out), *SMALL,
                           *options], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_a_probe_stops_after_its_batches_and_saves_a_resumable_run(tmp_path, tiny_dir):
    run, log = _train(tiny_dir, tmp_path / "run", "--probe", "5")
    assert (run["step"], run["epochs_done"], run["history"], run["best_valid"]) == (5, 0, [], None)
    assert run["windows"] and run["windows"][0][0] == 4  # a window of 4 batches was logged on the way
    assert "probe finished: saved" in log
    assert (tmp_path / "run" / "resume.pt").is_file() and not (tmp_path / "run" / "best.pt").exists()
    saved = torch.load(tmp_path / "run" / "resume.pt", weights_only=True)
    assert (saved["state"]["step"], saved["state"]["batch"], saved["state"]["epoch"]) == (5, 5, 0)


def test_a_time_limit_stops_at_the_next_batch_and_keeps_the_model_as_it_stands(tmp_path, tiny_dir):
    run, log = _train(tiny_dir, tmp_path / "run", "--time-limit", "0.000001")  # 60 µs: over after one batch
    assert run["step"] == 1 and run["epochs_done"] == 0 and "time limit: saved" in log
    (epoch,) = run["history"]  # the cut-short epoch is validated, so the model so far can be the best one
    assert epoch["partial"] is True and epoch["batches"] == 1 and epoch["valid_loss"] == run["best_valid"]
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "resume.pt").is_file()


def test_a_resumed_run_continues_where_it_stopped_and_ends_as_a_straight_one(tmp_path, tiny_dir):
    _train(tiny_dir, tmp_path / "resumed", "--probe", "5")
    resumed, log = _train(tiny_dir, tmp_path / "resumed", "--resume")
    assert "resumed at epoch 1, batch 5, step 5" in log
    assert resumed["step"] == 2 * BATCHES and resumed["epochs_done"] == 2
    assert [(e["epoch"], e["partial"], e["batches"]) for e in resumed["history"]] == [(1, False, BATCHES),
                                                                                      (2, False, BATCHES)]
    straight, _ = _train(tiny_dir, tmp_path / "straight")
    assert [e["valid_loss"] for e in resumed["history"]] == pytest.approx(
        [e["valid_loss"] for e in straight["history"]], rel=1e-9)
    a = torch.load(tmp_path / "straight" / "best.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "best.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_a_saved_run_says_so(tmp_path, tiny_dir):
    proc = subprocess.run([sys.executable, "-m", "wlm", "train", "--data", str(tiny_dir), "--out",
                           str(tmp_path / "none"), *SMALL, "--resume"], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "resume checkpoint" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
