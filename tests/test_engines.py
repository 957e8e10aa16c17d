import json
import os
import sys

import pytest
import torch

from wlm import cli, onnx_engine
from wlm.benchmark import COLUMNS, ENGINE_COLUMNS, benchmark_variants
from wlm.errors import WlmError
from wlm.evaluate import evaluate
from wlm.fidelity import output_fidelity
from wlm.onnx_engine import OnnxModel, onnx_files, onnx_model, parse_engines, weights_hash
from wlm.quantize import PRESETS, quantize

from conftest import tiny_model


@pytest.fixture(scope="module")
def ort_files(trained_tiny, tmp_path_factory):
    model, _ = trained_tiny
    return onnx_files(model, tmp_path_factory.mktemp("onnx-cache"))


def test_exported_models_follow_torch(trained_tiny, ort_files):
    model, corpus = trained_tiny
    reference = evaluate(model, corpus.test)
    fp32 = evaluate(OnnxModel(ort_files["fp32"]), corpus.test)
    int8 = evaluate(OnnxModel(ort_files["int8"]), corpus.test)
    assert fp32.tokens == int8.tokens == reference.tokens == len(corpus.test) - 1
    assert fp32.loss == pytest.approx(reference.loss, abs=1e-5)
    # int8 weights move the loss a little, but not far: the hidden state is carried like torch's.
    assert 0 < abs(int8.loss - reference.loss) < 0.05
    assert ort_files["int8"].stat().st_size < ort_files["fp32"].stat().st_size / 2


def test_call_shape_matches_torch_with_free_length_and_batch(trained_tiny, ort_files):
    model, corpus = trained_tiny
    session = OnnxModel(ort_files["fp32"], threads=2)
    assert session.session.get_session_options().intra_op_num_threads == 2
    ids = corpus.test[:21].view(7, 3)  # sequence length and batch differ from the export's dummy input
    hidden = tuple(torch.randn_like(h) for h in model.init_hidden(3))
    with torch.no_grad():
        want_logits, (want_h, want_c) = model(ids, hidden)
    logits, (h, c) = session(ids, hidden)
    assert logits.shape == want_logits.shape and h.shape == want_h.shape
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c, want_c, atol=1e-5, rtol=1e-4)
    assert [t.shape for t in session.init_hidden(3)] == [t.shape for t in model.init_hidden(3)]


def test_fidelity_harness_runs_on_sessions(trained_tiny, ort_files):
    model, corpus = trained_tiny
    same = output_fidelity(model, OnnxModel(ort_files["fp32"]), corpus.test)
    assert same.kl_max < 1e-6 and same.top1_agreement == 1.0
    int8 = output_fidelity(model, OnnxModel(ort_files["int8"]), corpus.test)
    assert int8.kl_mean > 100 * max(same.kl_mean, 1e-12) and int8.top1_agreement > 0.8
    assert abs(int8.delta_loss) < 0.05


def test_cache_is_reused_and_keyed_by_weights(trained_tiny, tmp_path, monkeypatch):
    model, _ = trained_tiny
    first = onnx_files(model, tmp_path)
    stamps = {k: p.stat().st_mtime_ns for k, p in first.items()}

    def fail(*args, **kwargs):
        raise AssertionError("export ran again although the files are cached")

    monkeypatch.setattr(onnx_engine, "export_onnx", fail)
    monkeypatch.setattr(onnx_engine, "quantize_onnx", fail)
    again = onnx_files(model, tmp_path)
    assert again == first and {k: p.stat().st_mtime_ns for k, p in again.items()} == stamps
    other = tiny_model(model.config.ntoken, seed=5)
    assert weights_hash(other) != weights_hash(model)
    with pytest.raises(AssertionError, match="export ran again"):
        onnx_files(other, tmp_path)  # new weights, new folder: it must export


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path))
    paths = onnx_files(tiny_model(12, nlayers=1))
    assert paths["int8"].is_file() and paths["int8"].parent.parent == tmp_path / "onnx"


def test_missing_onnxruntime_is_a_clear_error(tmp_path, tiny_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(WlmError, match="pip install onnx onnxruntime"):
        onnx_model(tiny_model(12), cache_dir=tmp_path)
    code = cli.main(["compare", "--random-init", "--data", str(tiny_dir), "--engines", "torch,onnxruntime"])
    err = capsys.readouterr().err
    assert code == 2 and "error: the onnxruntime engine needs" in err and "Traceback" not in err


def test_export_failures_are_clear_errors(tmp_path, monkeypatch):
    model = tiny_model(12)
    with pytest.raises(WlmError, match="float LSTM language model"):
        onnx_files(quantize(model, PRESETS["tutorial"]), tmp_path)

    def broken_export(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(WlmError, match="exporting the model to ONNX failed.*unsupported operator"):
        onnx_files(model, tmp_path)
    assert not list(tmp_path.rglob("*.onnx*"))  # nothing half-written left to be mistaken for a cache hit


def test_engine_names_are_checked():
    assert parse_engines(None) == ["torch"]
    assert parse_engines("torch, onnxruntime,torch") == ["torch", "onnxruntime"]
    with pytest.raises(WlmError, match="unknown engine 'tensorrt'"):
        parse_engines("torch,tensorrt")
    with pytest.raises(WlmError, match="unknown onnxruntime variant"):
        onnx_model(tiny_model(12), "int4")


def test_compare_rows_per_engine(trained_tiny, tmp_path):
    model, corpus = trained_tiny
    torch_only = benchmark_variants(model, corpus.test, ["tutorial"], max_tokens=60)
    assert list(torch_only.columns) == COLUMNS
    both = benchmark_variants(model, corpus.test, ["tutorial"], max_tokens=60, engines=["torch", "onnxruntime"],
                            cache_dir=tmp_path)
    assert list(both.columns) == ENGINE_COLUMNS
    assert list(zip(both.variant, both.engine)) == [("fp32", "torch"), ("tutorial", "torch"),
                                                    ("fp32", "onnxruntime"), ("int8", "onnxruntime")]
    # Same tokens, same float weights: both engines' fp32 losses agree.
    assert both.loss[2] == pytest.approx(both.loss[0], abs=1e-5)
    assert both.size_mb[3] < both.size_mb[2] and both.speedup[0] == 1.0


def test_cli_compare_with_engines_json(tmp_path, tiny_dir, monkeypatch, capsys):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path))
    code = cli.main(["compare", "--random-init", "--data", str(tiny_dir), "--max-tokens", "50",
                     "--engines", "torch,onnxruntime", "--format", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["variant"], r["engine"]) for r in rows][2:] == [("fp32", "onnxruntime"), ("int8", "onnxruntime")]
    assert all(list(r) == ENGINE_COLUMNS for r in rows)
    assert list((tmp_path / "onnx").iterdir())  # the export went to $WLM_CACHE_DIR


def test_old_exports_are_pruned(tmp_path, tiny_corpus):
    root = tmp_path / "onnx"
    for n in range(onnx_engine.KEEP_EXPORTS + 1):
        old = root / f"old-export-{n}"
        old.mkdir(parents=True)
        (old / "model.fp32.onnx").write_bytes(b"stale")
        os.utime(old, (1_000_000 + n, 1_000_000 + n))
    paths = onnx_files(tiny_model(len(tiny_corpus.dictionary)), cache_dir=root)
    kept = sorted(p.name for p in root.iterdir())
    assert len(kept) == onnx_engine.KEEP_EXPORTS and paths["int8"].parent.name in kept
    # The most recently used of the old ones survive; the oldest go.
    assert "old-export-0" not in kept and f"old-export-{onnx_engine.KEEP_EXPORTS}" in kept
