"""The "Inside a multiply" tab: six stages on a real input, numbers from the core, bad input as st.error."""
import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from wlm import lesson_charts
from wlm.dynamic_multiply import dynamic_multiply, input_from_position, input_from_prompt, scales_of
from wlm.fidelity import sqnr_db

from apptest import assert_clean, run_app, takeaways

TAB = 4


def _tab(at):
    tab = at.tabs[TAB]
    assert tab.label == "Inside a multiply"
    return tab


def _shown_sqnr(at) -> str:
    return next(m.value for m in _tab(at).metric if m.label == "SQNR")


def _torch_layer_output(weight, bias, x, per_channel):
    """What PyTorch's own dynamically quantized Linear computes for ``x``."""
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
        qconfig = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
        return tq.quantize_dynamic(nn.Sequential(linear), {nn.Linear: qconfig})[0](x.view(1, -1))[0]


def test_six_stages_each_with_a_chart_and_a_takeaway(app_env):
    at = run_app()
    assert_clean(at)
    tab = _tab(at)
    assert [s.value[:2] for s in tab.subheader] == ["1 ", "2 ", "3 ", "4 ", "5 ", "6 "]
    charts = tab.get("vega_lite_chart")
    assert len(charts) == 7  # six stages, plus the decoder's moved next words
    assert len(takeaways(tab)) == len(charts)
    assert any("reduce_range" in m.value for m in tab.markdown)
    assert len(tab.dataframe[0].value) == 4  # a few int8 weight rows with their scale
    assert "scale" in tab.dataframe[0].value.columns


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_decoder_result_is_torchs_and_the_sqnr_shown_is_the_cores(app_env, per_channel):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app()
    at.text_input(key="mul_prompt").set_value("the dog sat on the").run()
    at.toggle(key="mul_pc").set_value(per_channel).run()
    assert_clean(at)
    item = input_from_prompt(model, dictionary, "decoder", "the dog sat on the")
    result = dynamic_multiply(model, item, per_channel=per_channel)
    theirs = _torch_layer_output(model.decoder.weight, model.decoder.bias, item.vector, per_channel)
    assert torch.allclose(torch.from_numpy(result.output), theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
    assert _shown_sqnr(at) == f"{result.sqnr_db:.1f} dB"
    assert _shown_sqnr(at) == f"{sqnr_db(torch.from_numpy(result.float_output), theirs):.1f} dB"
    assert any(t.endswith(lesson_charts.error_chart(result).takeaway) for t in takeaways(_tab(at)))


def test_an_lstm_layer_at_a_test_position(app_env):
    model, dictionary, ids = app_env["model"], app_env["corpus"].dictionary, app_env["corpus"].test
    at = run_app()
    at.selectbox(key="mul_layer").set_value("rnn.weight_hh_l1").run()
    at.radio(key="mul_kind").set_value("A test position").run()
    at.number_input(key="mul_pos").set_value(7).run()
    assert_clean(at)
    result = dynamic_multiply(model, input_from_position(model, dictionary, ids, "rnn.weight_hh_l1", 7))
    assert _shown_sqnr(at) == f"{result.sqnr_db:.1f} dB"
    assert len(_tab(at).get("vega_lite_chart")) == 6  # no next-word scores for an LSTM gate


def test_two_prompts_get_the_scales_the_core_computes(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app()
    at.text_input(key="mul_prompt").set_value("the cat sat on the").run()
    at.text_input(key="mul_prompt2").set_value("a dog ran").run()
    assert_clean(at)
    prompts = ("the cat sat on the", "a dog ran")
    scales = scales_of([input_from_prompt(model, dictionary, "decoder", p) for p in prompts])
    assert scales["scale"].nunique() == 2  # two inputs, two run-time scales
    assert f"**Takeaway:** {lesson_charts.scales_chart(scales).takeaway}" in takeaways(_tab(at))


def test_an_empty_prompt_is_an_error_message(app_env):
    at = run_app()
    at.text_input(key="mul_prompt").set_value("   ").run()
    assert not at.exception
    assert [e.value for e in _tab(at).error] == ["the prompt is empty; type at least one word"]
    assert not _tab(at).get("vega_lite_chart")
    assert at.tabs[5].label == "Fewer bits" and not at.tabs[5].error  # the other tabs still draw
