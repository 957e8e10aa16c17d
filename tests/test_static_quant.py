"""Static or dynamic: the simulated model is torch's dynamic model exactly where the quantized matmuls read their
inputs, the calibrations are torch's observers', and the study's rows say what they measure."""
import json
import math
import warnings

import pytest
import torch
from torch import nn
from torch.ao.quantization import HistogramObserver, MinMaxObserver

from wlm.errors import WlmError
from wlm.evaluate import chunks, evaluate
from wlm.quantize import PRESETS, quantize
from wlm.static_quant import (
    DYNAMIC,
    DYNAMIC_SIMULATED,
    STUDIES,
    SimulatedModel,
    calibrate,
    convert_static_decoder,
    estimate_seconds,
    input_points,
    notice,
    prepare_static_decoder,
    qparams_bounds,
    readable_rows,
    runtime_qparams,
    scales_takeaway,
    score,
    stage_labels,
    static_decoder_qparams,
    study,
    variants_takeaway,
)

from conftest import tiny_model, tutorial_int8, tutorial_loss
from test_cli import run

TOKENS = 60


@pytest.fixture(scope="module")
def tiny_study(trained_tiny):
    model, corpus = trained_tiny
    return study(model, corpus.test, corpus.train, max_tokens=TOKENS, calibration_tokens=200, sizes=(20, 200))


def _max_gap(a: nn.Module, b: nn.Module, ids: torch.Tensor) -> float:
    return max(float((x - y).abs().max()) for _, (x, y) in chunks([a, b], ids))


def test_dynamic_row_is_the_tutorial_variant(trained_tiny, tiny_study):
    model, corpus = trained_tiny
    row = tiny_study.table()
    dynamic = row[row["activations"] == DYNAMIC].iloc[0]
    assert dynamic["kernels"] == "real"
    assert dynamic["loss"] == evaluate(quantize(model, PRESETS["tutorial"]), corpus.test, max_tokens=TOKENS).loss
    # the tutorial's own call and loop, written out apart from wlm
    assert dynamic["loss"] == pytest.approx(tutorial_loss(tutorial_int8(model), corpus.test[:TOKENS]), abs=1e-6)
    float_row = row[row["activations"] == "float"].iloc[0]
    assert float_row["loss"] == evaluate(model, corpus.test, max_tokens=TOKENS).loss


@pytest.mark.parametrize("which", ["trained", "random"])
def test_simulated_dynamic_is_torchs_dynamic_model(trained_tiny, which):
    """With run-time scales the step-by-step loop gives torch's quantized model's logits (to float32's last bits):
    the activations it rounds are exactly the inputs of torch's quantized matmuls (the whole chunk for W_ih and
    the decoder, each step's state for W_hh)."""
    model, corpus = trained_tiny
    ids = corpus.test
    if which == "random":  # wider activations, three layers, another width
        torch.manual_seed(4)
        model = tiny_model(len(corpus.dictionary), seed=4, nlayers=3)
        with torch.no_grad():
            for name, p in model.rnn.named_parameters():
                p.mul_(3.0 if "weight" in name else 1.0)
        ids = torch.randint(0, len(corpus.dictionary), (130,), generator=torch.Generator().manual_seed(0))
    real = tutorial_int8(model)
    sim = SimulatedModel(model, [None], quantize(model, PRESETS["tutorial"]))
    assert _max_gap(real, sim, ids) <= 1e-5
    assert evaluate(sim, ids).loss == pytest.approx(evaluate(real, ids).loss, abs=1e-6)


def test_on_the_bundled_model_the_simulated_dynamic_logits_are_torchs_bit_for_bit(real_corpus):
    """What the README says: the step-by-step loop with run-time scales computes the same float32 logits as torch's
    dynamic model (fbgemm, x86), on the bundled model and real text."""
    from wlm.checkpoint import load_model

    model = load_model(None).model
    quantized = quantize(model, PRESETS["tutorial"])
    sim = SimulatedModel(model, [None], quantized)
    assert all(torch.equal(a, b) for _, (a, b) in chunks([quantized, sim], real_corpus.test[:251]))


def test_the_points_are_the_chunk_not_each_step(trained_tiny):
    """A control: the same loop with one scale per step for the input product (not per chunk) is visibly off, so
    the match above says where torch quantizes."""
    model, corpus = trained_tiny
    real = tutorial_int8(model)

    class PerStep(SimulatedModel):
        def _multiply(self, point, x, position):
            if point.startswith("rnn.weight_ih") and x.shape[1] > 1:
                return torch.cat([super(PerStep, self)._multiply(point, x[:, t:t + 1], position + t)
                                  for t in range(x.shape[1])], 1)
            return super()._multiply(point, x, position)

    exact = SimulatedModel(model, [None], quantize(model, PRESETS["tutorial"]))
    per_step = PerStep(model, [None], quantize(model, PRESETS["tutorial"]))
    assert _max_gap(real, per_step, corpus.test) > 100 * max(_max_gap(real, exact, corpus.test), 1e-7)


def test_runtime_qparams_are_fbgemms():
    """The pair picked from a min and max is what torch's own chooser returns for that tensor (reduce_range)."""
    g = torch.Generator().manual_seed(0)
    for k in range(20):
        x = torch.randn(300, generator=g) * (k + 1) * 0.1 + (k % 5 - 2) * 0.3
        scale, zero = torch._choose_qparams_per_tensor(x, True)
        assert runtime_qparams(float(x.min()), float(x.max())) == (pytest.approx(scale, rel=1e-7), zero)
    assert runtime_qparams(0.0, 0.0) == (pytest.approx(0.1), 0)


def test_calibration_is_torchs_observers_on_the_float_activations(trained_tiny):
    """Fed the float model's decoder input and embedding (computed here with the fused LSTM), torch's observers
    with reduce_range=True give the calibrated pairs."""
    model, corpus = trained_tiny
    tokens = 120
    found = calibrate(model, corpus.train, [tokens])
    ids = corpus.train[:tokens - 1]
    with torch.no_grad():
        emb = model.encoder(ids.view(-1, 1))
        out, _ = model.rnn(emb, model.init_hidden(1))
    for name, cls in (("min-max", MinMaxObserver), ("histogram", HistogramObserver)):
        for point, values in (("rnn.weight_ih_l0", emb), ("decoder", out)):
            with warnings.catch_warnings():  # torch now asks for quant_min/quant_max, which wlm passes instead
                warnings.simplefilter("ignore", UserWarning)
                observer = cls(dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=True)
            observer(values.reshape(-1, values.shape[-1]))
            scale, zero = observer.calculate_qparams()
            got = found[(name, tokens)].qparams[point]
            if name == "min-max":  # the histogram depends on how the values were batched; its range must cover
                assert got == (pytest.approx(float(scale), rel=1e-6), int(zero)), point
        mm = found[("min-max", tokens)]
        low, high = qparams_bounds(mm.qparams["decoder"])
        assert low <= float(out.min()) + 1e-6 and float(out.max()) <= high + mm.qparams["decoder"][0]
    assert set(found[("min-max", tokens)].qparams) == set(input_points(model))


def test_min_max_on_the_test_tokens_themselves_clips_nothing(trained_tiny, tiny_study):
    model, corpus = trained_tiny
    itself = calibrate(model, corpus.test[:TOKENS], [TOKENS], observers=["min-max"], text="test")
    (scored,) = score(SimulatedModel(model, [itself[("min-max", TOKENS)].qparams]), corpus.test[:TOKENS])
    assert scored.clipped == 0 and scored.values > 0
    text = tiny_study.table("calibration text")
    row = text[(text["activations"] == "static min-max") & (text["calibration"] == "test")].iloc[0]
    assert row["clipped_share"] == 0 and row["calibration_tokens"] == TOKENS


def test_a_wider_range_never_clips_more(trained_tiny):
    model, corpus = trained_tiny
    narrow = calibrate(model, corpus.train, [12], observers=["min-max"])[("min-max", 12)].qparams
    widened = [{p: (s * k, z) for p, (s, z) in narrow.items()} for k in (1.0, 1.25, 1.6, 2.5, 4.0)]
    scored = score(SimulatedModel(model, widened), corpus.test)
    clipped = [s.clipped for s in scored]
    assert clipped[0] > 0  # the narrow range does clip test activations: the comparison means something
    assert all(a >= b for a, b in zip(clipped, clipped[1:])), clipped
    assert clipped[-1] == 0


def test_variants_in_one_batch_score_as_each_alone(trained_tiny):
    """A row of the batch is that variant alone, scored by wlm.evaluate."""
    model, corpus = trained_tiny
    found = calibrate(model, corpus.train, [30, 300])
    variants = [None, found[("min-max", 30)].qparams, found[("histogram", 300)].qparams]
    together = score(SimulatedModel(model, variants), corpus.test)
    for variant, scored in zip(variants, together):
        alone = SimulatedModel(model, [variant])
        assert scored.result.loss == evaluate(alone, corpus.test).loss
        (single,) = score(alone, corpus.test)
        assert single.clipped == scored.clipped


@pytest.mark.parametrize("observer", ["min-max", "histogram"])
def test_real_static_decoder_reads_the_calibrated_input_pair(trained_tiny, observer):
    model, corpus = trained_tiny
    decoder = prepare_static_decoder(model, observer)
    found = calibrate(model, corpus.train, [40, 200], observers=[observer], decoder_feed=(200, decoder))
    convert_static_decoder(decoder)
    scale, zero = static_decoder_qparams(decoder)
    assert (scale, zero) == (pytest.approx(found[(observer, 200)].qparams["decoder"][0], rel=1e-7),
                             found[(observer, 200)].qparams["decoder"][1])
    assert type(decoder.linear).__module__.startswith("torch.ao.nn.quantized")  # torch's real static kernel
    assert not hasattr(model.decoder, "qconfig")  # the float model is untouched


def test_rows_say_what_they_are(trained_tiny, tiny_study):
    rows = tiny_study.rows
    assert set(rows["study"]) == set(STUDIES)
    variants = tiny_study.table()
    assert list(variants["activations"]) == ["float", DYNAMIC, DYNAMIC_SIMULATED, "static min-max", "static histogram",
                                             "static min-max, decoder only", "static histogram, decoder only"]
    assert list(variants["kernels"]) == ["float", "real", "simulated", "simulated", "simulated", "real", "real"]
    simulated = rows[rows["kernels"] == "simulated"]
    assert simulated["tokens_per_s"].isna().all() and rows[rows["kernels"] != "simulated"]["tokens_per_s"].gt(0).all()
    base = variants.loc[0, "loss"]
    assert (rows["delta_loss"] - (rows["loss"] - base)).abs().max() < 1e-12
    assert variants.loc[2, "loss"] == pytest.approx(variants.loc[1, "loss"], abs=1e-9)  # simulated = real
    sizes = tiny_study.table("calibration size")
    assert sorted(set(sizes["calibration_tokens"])) == [20, 200] and (rows["clipped_share"].between(0, 1)).all()
    assert (rows["tokens"] == TOKENS - 1).all()
    points = tiny_study.points
    assert list(points["point"]) == input_points(trained_tiny[0])
    assert (points["min_max_low"] <= 0).all() and (points["min_max_high"] >= 0).all()
    assert (tiny_study.scales["scale"] > 0).all()


def test_takeaways_come_from_the_numbers(tiny_study):
    variants = tiny_study.table()
    dynamic = variants[variants["activations"] == DYNAMIC].iloc[0]
    text = variants_takeaway(tiny_study)
    assert f"Dynamic costs {dynamic['delta_loss']:+.4f} nats" in text and "200 training tokens" in text
    assert "reproduces the real one exactly" in text or "nats from the real one" in text
    point = "rnn.weight_hh_l1"
    entry = tiny_study.points.set_index("point").loc[point]
    assert f"median {entry['runtime_scale_median']:.3g}" in scales_takeaway(tiny_study, point)
    assert len(notice(tiny_study)) >= 2
    shown = readable_rows(variants)
    assert "Δ loss vs float" in shown.columns and shown.iloc[2]["tokens/s"] == "—"


def test_estimate_names_every_stage(trained_tiny):
    model, corpus = trained_tiny
    estimate = estimate_seconds(model, corpus.test, corpus.train, max_tokens=TOKENS, calibration_tokens=200,
                                sizes=(20, 200), probe_tokens=10)
    assert list(estimate) == stage_labels(("min-max", "histogram"))
    assert all(seconds > 0 for seconds in estimate.values())


@pytest.mark.parametrize("kwargs, message", [
    ({"max_tokens": 1}, "test tokens must be a whole number of at least 2"),
    ({"calibration_tokens": 0}, "calibration tokens must be"),
    ({"sizes": (100, 1)}, "calibration size must be"),
    ({"observers": ("percentile",)}, "unknown observer"),
    ({"rounds": 0}, "rounds must be"),
])
def test_bad_parameters_say_how_to_fix_them(trained_tiny, kwargs, message):
    model, corpus = trained_tiny
    with pytest.raises(WlmError, match=message):
        study(model, corpus.test, corpus.train, **{"max_tokens": TOKENS, **kwargs})


def test_more_tokens_than_the_splits_are_clamped_and_said(trained_tiny):
    model, corpus = trained_tiny
    found = study(model, corpus.test, corpus.train, max_tokens=10_000, calibration_tokens=10_000, sizes=(50,),
                  observers=("min-max",), real_decoder=False)
    assert found.tokens == len(corpus.test) and found.calibration_tokens == len(corpus.train)
    assert len(found.notes) == 2 and "used all of them" in found.notes[0]


# --- the command ---------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_pth(tmp_path, tiny_corpus):
    path = tmp_path / "m.pth"
    torch.save(tiny_model(len(tiny_corpus.dictionary)).state_dict(), path)
    return str(path)


ARGS = ("--max-tokens", "50", "--calibration-tokens", "150", "--sizes", "30,150")


def test_static_command_rows_json_and_csv(tiny_pth, tiny_dir):
    proc = run("static", "--checkpoint", tiny_pth, "--data", str(tiny_dir), *ARGS, "--format", "json", check_rc=0)
    rows = json.loads(proc.stdout)
    assert {"activations", "calibration_tokens", "loss", "delta_loss", "clipped_share"} <= set(rows[0])
    main = [r for r in rows if r["study"] == "variants"]
    assert [r["activations"] for r in main][:5] == ["float", "dynamic", "dynamic (simulated)", "static min-max",
                                                    "static histogram"]
    assert main[1]["loss"] == pytest.approx(main[2]["loss"], abs=1e-9) and main[0]["delta_loss"] == 0
    assert {r["calibration_tokens"] for r in rows if r["study"] == "calibration size"} == {30, 150}
    assert "simulated" in proc.stderr and "about" in proc.stderr and "Dynamic costs" in proc.stderr
    # the dynamic row is `compare`'s tutorial row on the same tokens
    compare = json.loads(run("compare", "--checkpoint", tiny_pth, "--data", str(tiny_dir), "--max-tokens", "50",
                             "--format", "json", check_rc=0).stdout)
    assert main[1]["loss"] == next(r["loss"] for r in compare if r["variant"] == "tutorial")
    csv = run("static", "--checkpoint", tiny_pth, "--data", str(tiny_dir), *ARGS, "--observers", "min-max",
              "--format", "csv", check_rc=0).stdout.splitlines()
    assert csv[0].startswith("study,activations,kernels,calibration,calibration_tokens,loss,delta_loss,clipped_share")
    assert not any("histogram" in line for line in csv)


def test_static_command_markdown_and_ranges(tiny_pth, tiny_dir):
    text = run("static", "--checkpoint", tiny_pth, "--data", str(tiny_dir), *ARGS, check_rc=0).stdout
    assert "Static or dynamic on 50 test tokens" in text and "Loss against calibration size" in text
    assert "| activations" in text and "Δ loss vs float" in text and "test tokens themselves" in text
    ranges = json.loads(run("static", "--checkpoint", tiny_pth, "--data", str(tiny_dir), *ARGS, "--ranges",
                            "--format", "json", check_rc=0).stdout)
    assert [r["point"] for r in ranges][-1] == "decoder" and all(not math.isnan(r["min_max_scale"]) for r in ranges)


@pytest.mark.parametrize("args, message", [
    (["--max-tokens", "1"], "--max-tokens 1000"),
    (["--calibration-tokens", "-5"], "--calibration-tokens"),
    (["--sizes", "100,many"], "whole numbers separated by commas"),
    (["--observers", "percentile"], "unknown observer"),
    (["--rounds", "0"], "rounds must be"),
])
def test_static_command_bad_parameters_exit_2(tiny_pth, tiny_dir, args, message):
    proc = run("static", "--checkpoint", tiny_pth, "--data", str(tiny_dir), *args, check_rc=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


# --- the app's backend (the tab itself: tests/test_static_tab.py) ----------------------------------------------

def test_a_shared_server_bounds_the_request():
    from ui.backend import static_request
    from wlm import hosting

    limit = hosting.MAX_STATIC_CALIBRATION_TOKENS
    assert static_request(10**6, 10**6, (100, 10**6), hosted=True) == (hosting.MAX_STATIC_TOKENS, limit, (100, limit))
    assert static_request(10**6, 10**6, (100, 10**6), hosted=False) == (10**6, 10**6, (100, 10**6))


def test_backend_measures_with_a_progress_bar(trained_tiny, tmp_path):
    """The cached functions take the request values, report progress through the page, and give the study."""
    import contextlib

    from ui.backend import Page, static_estimate, static_study
    from ui.requests import CorpusSource, ModelSource
    from wlm.model import LoadedModel

    model, corpus = trained_tiny
    source = ModelSource("path", str(tmp_path / "tiny-static"), LoadedModel(model, "tiny"))
    split = CorpusSource(str(tmp_path / "tiny-corpus"), corpus)
    reported = []

    class Recording(Page):
        @contextlib.contextmanager
        def progress(self, text):
            yield lambda fraction, detail="": reported.append((fraction, detail))

    request = (source, split, TOKENS, 200, (20, 200), False)
    assert sum(static_estimate(*request, _page=Recording()).values()) > 0
    found = static_study(*request, _page=Recording())
    assert len(found.table()) == 7
    fractions = [f for f, _ in reported]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1 + 1e-9
    assert any(detail.startswith("simulated:") for _, detail in reported)
    alone = study(model, corpus.test, corpus.train, max_tokens=TOKENS, calibration_tokens=200, sizes=(20, 200))
    assert list(found.rows["loss"]) == list(alone.rows["loss"])
