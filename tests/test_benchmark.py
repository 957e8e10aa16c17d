
import pytest

from wlm.benchmark import benchmark_variants, thread_sweep, tokens_for_seconds, with_delta_loss
from wlm.evaluate import evaluate
from wlm.quantize import PRESETS

from conftest import tiny_model


def test_thread_sweep_one_row_per_variant_and_thread_with_the_same_loss(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    sweep = thread_sweep(model, tiny_corpus.test, [PRESETS["fp32"], PRESETS["tutorial"]], [1, 2], max_tokens=60)
    assert list(sweep["variant"]) == ["fp32", "fp32", "tutorial", "tutorial"]
    assert list(sweep["threads"]) == [1, 2, 1, 2]
    assert (sweep["tokens_per_s"] > 0).all()
    for _, group in sweep.groupby("variant"):
        assert group["loss"].max() - group["loss"].min() < 1e-5  # threads change speed, not results
    assert sweep.loc[0, "loss"] == pytest.approx(evaluate(model, tiny_corpus.test, max_tokens=60).loss, rel=1e-6)
    assert sweep.loc[0, "loss"] != sweep.loc[2, "loss"]


def test_tokens_for_seconds_scales_with_the_budget(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    ids = tiny_corpus.train
    small = tokens_for_seconds(model, ids, 0.0001, step=10)
    large = tokens_for_seconds(model, ids, 1000.0, step=10)
    assert small == 10  # never below one step
    assert large == len(ids) // 10 * 10  # never more than the split holds
    assert large % 10 == 0


def test_with_delta_loss_is_relative_to_float(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    table = with_delta_loss(benchmark_variants(model, tiny_corpus.test, ["tutorial"], max_tokens=50))
    assert table.loc[0, "delta_loss"] == 0
    assert table.loc[1, "delta_loss"] == pytest.approx(table.loc[1, "loss"] - table.loc[0, "loss"])
