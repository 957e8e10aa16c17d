"""The Speed & accuracy tab with ONNX Runtime rows, and the Fidelity tab against ONNX Runtime."""
import pytest

from apptest import assert_clean, run_app


def test_onnx_runtime_rows_and_fidelity_beside_pytorch(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    at = run_app()
    at.checkbox(key="speed_ort").check()
    at.button(key="speed_go").click()
    at.run()
    assert_clean(at)
    speed = at.tabs[2].dataframe[0].value
    assert list(speed["variant"]) == ["fp32", "tutorial", "onnxruntime fp32", "onnxruntime int8"]
    assert list(speed["engine"]) == ["torch", "torch", "onnxruntime", "onnxruntime"]
    # The float export computes what PyTorch's float model does.
    assert speed.loc[2, "loss"] == pytest.approx(speed.loc[0, "loss"], abs=1e-4)
    at.radio(key="fid_engine").set_value("ONNX Runtime int8")
    at.button(key="kl_go").click()
    at.run()
    assert_clean(at)
    agreement = [m for m in at.tabs[3].metric if m.label == "Top-1 agreement"]
    assert agreement and float(agreement[0].value.rstrip("%")) > 90
