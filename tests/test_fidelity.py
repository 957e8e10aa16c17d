import numpy as np
import pytest

from wlm.errors import WlmError
from wlm.fidelity import GATES, output_fidelity, weight_histogram, weight_sqnr
from wlm.quantize import PRESETS, quantize

from conftest import tiny_model


def test_identical_models_agree_perfectly(trained_tiny):
    model, corpus = trained_tiny
    r = output_fidelity(model, model, corpus.test)
    assert r.kl_max == pytest.approx(0, abs=1e-9) and r.top1_agreement == 1.0 and r.delta_loss == 0
    assert r.tokens == len(corpus.test) - 1 == len(r.kl)


def test_quantized_vs_float(trained_tiny):
    model, corpus = trained_tiny
    r = output_fidelity(model, quantize(model, PRESETS["tutorial"]), corpus.test, max_tokens=80)
    assert r.tokens == 79
    assert 0 < r.kl_mean < 0.01 and r.kl_median <= r.kl_p99 <= r.kl_max
    assert r.top1_agreement > 0.9
    assert abs(r.delta_loss) < 0.05
    unrelated = output_fidelity(model, tiny_model(len(corpus.dictionary), seed=9), corpus.test, max_tokens=80)
    assert unrelated.kl_mean > 100 * r.kl_mean and unrelated.top1_agreement < r.top1_agreement


def test_sqnr_rows_and_ordering():
    model = tiny_model(50)
    int8 = weight_sqnr(model, quantize(model, PRESETS["tutorial"]))
    lstm = int8[int8.part == "lstm"]
    assert set(lstm.gate) == {"all", *GATES}
    assert len(lstm[lstm.gate == "all"]) == 4  # ih and hh for each of 2 layers
    assert set(int8.part) == {"lstm", "decoder"}
    assert (int8.sqnr_db > 30).all()  # 8 bits give roughly 6 dB per bit
    fp16 = weight_sqnr(model, quantize(model, PRESETS["float16"]))
    assert fp16.sqnr_db.min() > int8.sqnr_db.max()
    emb4 = weight_sqnr(model, quantize(model, PRESETS["int8+emb4"]))
    emb8 = weight_sqnr(model, quantize(model, PRESETS["int8+emb8"]))
    e4 = emb4[emb4.part == "embedding"].sqnr_db.item()
    e8 = emb8[emb8.part == "embedding"].sqnr_db.item()
    assert e8 - e4 > 15  # four bits fewer cost ~24 dB


def test_weight_histogram_grid():
    model = tiny_model(50)
    h = weight_histogram(model, quantize(model, PRESETS["tutorial"]), "rnn.weight_hh_l0")
    weight = model.rnn.weight_hh_l0.detach()
    assert h.bins["weights"].sum() == weight.numel() == 4 * 24 * 24  # every weight counted once
    assert h.bins["start"].iloc[0] == pytest.approx(float(weight.min()))
    assert h.bins["end"].iloc[-1] == pytest.approx(float(weight.max()))
    assert np.allclose(h.bins["start"].iloc[1:], h.bins["end"].iloc[:-1])  # the bins tile the range, no gaps
    assert h.scale > 0 and len(h.grid) > 10
    assert 0 < h.max_error <= h.scale / 2 + 1e-6
    assert np.allclose(np.diff(h.grid), h.scale)
    with pytest.raises(WlmError, match="not quantized"):
        weight_histogram(model, quantize(model, PRESETS["tutorial"]), "encoder.weight")
