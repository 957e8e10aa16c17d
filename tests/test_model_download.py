"""The Model tab's download, and the sidebar's per-channel switch: what the button really serves (the bytes its
click would send, read back with ``torch.load(weights_only=True)``) against the quantized model torch's own
``quantize_dynamic`` makes of the same float model, and per-channel set from the sidebar or from a link."""
import copy
import io

import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from wlm.quantize import PRESETS
from wlm.quantized_file import load_quantized

from apptest import assert_clean, deferred_downloads, run_app

INT8 = {nn.LSTM: tq.default_dynamic_qconfig, nn.Linear: tq.default_dynamic_qconfig}
# Each preset as torch's own call, with torch's public qconfigs.
TORCH_CALLS = {
    "tutorial": INT8,
    "per-channel": {nn.LSTM: tq.default_dynamic_qconfig, nn.Linear: tq.per_channel_dynamic_qconfig},
    "int8+emb8": {**INT8, nn.Embedding: tq.float_qparams_weight_only_qconfig},
    "linear per-channel": {nn.Linear: tq.per_channel_dynamic_qconfig},  # LSTM left in float
}
LABEL = "Download the quantized model"


def _payload(at, served: dict) -> bytes:
    """The bytes a click on the Model tab's download button would send."""
    (button,) = [b for b in at.tabs[0].get("download_button") if b.proto.label == LABEL]
    return served[button.proto.deferred_file_id]()


def _served(at, served: dict) -> dict:
    """The state_dict the Model tab's download button serves, loaded as a visitor would load it."""
    return torch.load(io.BytesIO(_payload(at, served)), weights_only=True)


def _same(a, b) -> bool:
    """Equal values: quantized tensors by their integer codes and quantization parameters."""
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if not isinstance(a, torch.Tensor):
        return a == b
    if not isinstance(b, torch.Tensor) or a.is_quantized != b.is_quantized or a.dtype != b.dtype:
        return False
    if not a.is_quantized:
        return torch.equal(a, b)
    if a.qscheme() != b.qscheme() or not torch.equal(a.int_repr(), b.int_repr()):
        return False
    if a.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point())
    return (torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales())
            and torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points()))


def _check_payload(state: dict, model: nn.Module, calls: dict) -> nn.Module:
    """Every tensor of the served file is the one torch's quantize_dynamic gives; returns torch's model."""
    reference = tq.quantize_dynamic(copy.deepcopy(model).eval(), calls)
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("rnn.")}
    if nn.LSTM in calls:  # packed LSTM weights travel as plain quantized tensors under the float model's names
        expected.update({f"rnn.{k}": v for k, v in {**reference.rnn.get_weight(), **reference.rnn.get_bias()}.items()})
    else:
        expected.update({k: v for k, v in reference.state_dict().items() if k.startswith("rnn.")})
    assert set(state) == set(expected), sorted(set(state) ^ set(expected))
    different = [k for k in expected if not _same(state[k], expected[k])]
    assert not different, different
    return reference


@pytest.mark.parametrize("preset", ["tutorial", "per-channel", "int8+emb8"])
def test_the_download_serves_the_quantized_model_torch_makes(app_env, monkeypatch, preset):
    served = deferred_downloads(monkeypatch)
    at = run_app({"preset": preset})
    assert_clean(at)
    model = app_env["model"]
    state = _served(at, served)
    reference = _check_payload(state, model, TORCH_CALLS[preset])
    assert state["rnn.weight_ih_l0"].dtype == torch.qint8  # really quantized, not float tensors
    # And the file, read back as the page's note says, is a model that computes what torch's does.
    loaded = load_quantized(_payload(at, served), model.config, PRESETS[preset])
    x = torch.arange(len(app_env["corpus"].dictionary)).view(-1, 1)
    assert torch.equal(loaded(x, model.init_hidden(1))[0], reference(x, model.init_hidden(1))[0])


def _architecture(at) -> str:
    """The quantized architecture the Model tab prints."""
    return [t.value for t in at.tabs[0].text][1]


def test_a_link_with_pc_true_opens_per_channel_and_the_linear_is_per_channel(app_env, monkeypatch):
    served = deferred_downloads(monkeypatch)
    at = run_app({"pc": "true", "preset": "custom", "lstm": "true", "linear": "true", "emb": "false",
                  "dtype": "qint8"})
    assert_clean(at)
    assert at.sidebar.toggle(key="per_channel").value is True
    assert at.sidebar.selectbox(key="preset").value == "per-channel"  # the toggles are that preset's
    assert at.query_params["pc"] in ("true", ["true"])
    assert "DynamicQuantizedLinear(" in _architecture(at) and "qscheme=torch.per_channel_affine" in _architecture(at)
    state = _served(at, served)
    weight = state["decoder._packed_params._packed_params"][0]
    assert weight.qscheme() == torch.per_channel_affine and weight.q_per_channel_scales().numel() == weight.shape[0]
    _check_payload(state, app_env["model"], TORCH_CALLS["per-channel"])


def test_a_custom_link_quantizes_only_the_linear_per_channel(app_env, monkeypatch):
    served = deferred_downloads(monkeypatch)
    at = run_app({"pc": "true", "preset": "custom", "lstm": "false", "linear": "true", "emb": "false"})
    assert_clean(at)
    assert at.sidebar.toggle(key="per_channel").value is True and at.sidebar.toggle(key="lstm").value is False
    assert at.sidebar.selectbox(key="preset").value == "custom"
    assert "(rnn): LSTM(" in _architecture(at) and "qscheme=torch.per_channel_affine" in _architecture(at)
    _check_payload(_served(at, served), app_env["model"], TORCH_CALLS["linear per-channel"])


def test_the_sidebar_toggle_switches_per_channel_on_and_off(app_env, monkeypatch):
    served = deferred_downloads(monkeypatch)
    at = run_app()
    assert at.sidebar.toggle(key="per_channel").value is False and at.query_params["pc"] in ("false", ["false"])
    assert "qscheme=torch.per_tensor_affine" in _architecture(at)
    at.sidebar.toggle(key="per_channel").set_value(True).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="preset").value == "per-channel" and at.query_params["pc"] in ("true", ["true"])
    assert "qscheme=torch.per_channel_affine" in _architecture(at)
    _check_payload(_served(at, served), app_env["model"], TORCH_CALLS["per-channel"])
    at.sidebar.toggle(key="per_channel").set_value(False).run()
    assert at.sidebar.selectbox(key="preset").value == "tutorial" and at.query_params["pc"] in ("false", ["false"])
    _check_payload(_served(at, served), app_env["model"], TORCH_CALLS["tutorial"])


def test_per_channel_is_off_and_disabled_for_float16_weights(app_env):
    at = run_app({"pc": "true", "preset": "custom", "lstm": "true", "linear": "true", "dtype": "float16"})
    assert_clean(at)
    toggle = at.sidebar.toggle(key="per_channel")
    assert toggle.value is False and toggle.disabled  # float16 weights have no scales, per channel or not
    assert at.sidebar.selectbox(key="preset").value == "float16" and at.query_params["pc"] in ("false", ["false"])
    assert "per_channel_affine" not in _architecture(at) and "dtype=torch.float16" in _architecture(at)
