import math

import pytest

from wlm import benchmark
from wlm.benchmark import benchmark_variants, thread_sweep, tokens_for_seconds, with_delta_loss
from wlm.evaluate import EvalResult, evaluate
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


@pytest.mark.parametrize("seconds, tokens", [(0.3, 300), (0.337, 330), (0.004, 10), (1000.0, 450)],
                         ids=["whole steps", "rounded down to a step", "never below one step", "never past the split"])
def test_tokens_for_seconds_scales_the_probes_speed_to_the_budget(tiny_corpus, monkeypatch, seconds, tokens):
    """The probe's measured speed times the budget, in whole steps, within one step and the split: the arithmetic,
    checked on a probe that reports 1,000 tokens/s whatever this machine's speed."""
    model = tiny_model(len(tiny_corpus.dictionary))
    ids = tiny_corpus.train[:455]  # whole steps of 10: at most 450
    probes = []

    def probe(m, data, *, max_tokens=None, **_):
        probes.append((m, max_tokens))
        return EvalResult(loss=1.0, perplexity=math.e, tokens=max_tokens - 1, seconds=(max_tokens - 1) / 1000,
                          tokens_per_s=1000.0)

    monkeypatch.setattr(benchmark, "evaluate", probe)
    assert tokens_for_seconds(model, ids, seconds, step=10) == tokens
    assert probes == [(model, 200)]  # one short probe of the model, whatever the budget


def test_tokens_for_seconds_on_a_real_probe_gives_whole_steps_within_the_split(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    ids = tiny_corpus.train
    for seconds in (0.0001, 0.05, 1000.0):
        tokens = tokens_for_seconds(model, ids, seconds, step=10)
        assert tokens % 10 == 0 and 10 <= tokens <= len(ids) // 10 * 10, (seconds, tokens)
    assert tokens_for_seconds(model, ids, 1000.0, step=10) == len(ids) // 10 * 10  # no machine is that slow


def test_with_delta_loss_is_relative_to_float(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    table = with_delta_loss(benchmark_variants(model, tiny_corpus.test, ["tutorial"], max_tokens=50))
    assert table.loc[0, "delta_loss"] == 0
    assert table.loc[1, "delta_loss"] == pytest.approx(table.loc[1, "loss"] - table.loc[0, "loss"])


def test_display_names_rename_for_showing_and_leave_the_data_its_code_names(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    table = benchmark_variants(model, tiny_corpus.test, ["tutorial"], max_tokens=40)
    shown = benchmark.display_names(table)
    assert list(shown.columns) == ["variant", "size (MB)", "loss", "perplexity", "seconds", "tokens/s", "speedup"]
    assert list(table.columns) == benchmark.COLUMNS  # the table itself keeps the names code reads
    assert shown["tokens/s"].tolist() == table["tokens_per_s"].tolist()
