"""The "Inside a multiply" tab: six stages on a real input, numbers from the core, bad input as st.error."""
import json
import math
import re

import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from wlm.dynamic_multiply import dynamic_multiply, input_from_position, input_from_prompt, scales_of
from wlm.fidelity import sqnr_db

from apptest import assert_clean, run_app, takeaways

TAB = 4
OPEN = {"tab": "inside-a-multiply"}  # the link that opens this tab


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
    at = run_app(OPEN)
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
    at = run_app(OPEN)
    at.text_input(key="mul_prompt").set_value("the dog sat on the").run()
    at.toggle(key="mul_pc").set_value(per_channel).run()
    assert_clean(at)
    item = input_from_prompt(model, dictionary, "decoder", "the dog sat on the")
    result = dynamic_multiply(model, item, per_channel=per_channel)
    theirs = _torch_layer_output(model.decoder.weight, model.decoder.bias, item.vector, per_channel)
    assert torch.allclose(torch.from_numpy(result.output), theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
    assert _shown_sqnr(at) == f"{result.sqnr_db:.1f} dB"
    assert _shown_sqnr(at) == f"{sqnr_db(torch.from_numpy(result.float_output), theirs):.1f} dB"
    # The last stage's takeaway names the figures worked out here from torch's own layer and the float one.
    with torch.no_grad():
        exact = model.decoder(item.vector.view(1, -1))[0].double()
    error = theirs.double() - exact
    sqnr = float(20 * torch.log10(exact.norm() / error.norm()))
    said = next(t for t in takeaways(_tab(at)) if " outputs: SQNR " in t)
    found = re.search(r"([\d,]+) outputs: SQNR ([\d.]+) dB \(about ([\d.]+) bits kept\): the largest error is "
                      r"([\d.e+-]+), ([\d.]+)% of the largest output\.$", said)
    assert found, said
    assert int(found[1].replace(",", "")) == model.decoder.out_features
    assert float(found[2]) == pytest.approx(sqnr, abs=0.051)
    assert float(found[3]) == pytest.approx(sqnr / 6.02, abs=0.051)
    worst = float(error.abs().max())
    assert float(found[4]) == pytest.approx(worst, rel=0.01)
    assert float(found[5]) == pytest.approx(100 * worst / float(exact.abs().max()), abs=0.006)


def test_an_lstm_layer_at_a_test_position(app_env):
    model, dictionary, ids = app_env["model"], app_env["corpus"].dictionary, app_env["corpus"].test
    at = run_app(OPEN)
    at.selectbox(key="mul_layer").set_value("rnn.weight_hh_l1").run()
    at.radio(key="mul_kind").set_value("A test position").run()
    at.number_input(key="mul_pos").set_value(7).run()
    assert_clean(at)
    result = dynamic_multiply(model, input_from_position(model, dictionary, ids, "rnn.weight_hh_l1", 7))
    assert _shown_sqnr(at) == f"{result.sqnr_db:.1f} dB"
    assert len(_tab(at).get("vega_lite_chart")) == 6  # no next-word scores for an LSTM gate


def test_two_prompts_get_the_scales_the_core_computes(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app(OPEN)
    at.text_input(key="mul_prompt").set_value("the cat sat on the").run()
    at.text_input(key="mul_prompt2").set_value("a dog ran").run()
    assert_clean(at)
    prompts = ("the cat sat on the", "a dog ran")
    items = [input_from_prompt(model, dictionary, "decoder", p) for p in prompts]
    scales = scales_of(items)
    assert scales["scale"].nunique() == 2  # two inputs, two run-time scales
    # Each input's scale as torch's own observer computes it for a dynamic layer (7 bits on x86: reduce_range).
    theirs = {}
    for item in items:
        observer = tq.MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=127)  # codes 0-127
        observer(item.vector.float())
        theirs[item.word] = float(observer.calculate_qparams()[0])
    assert scales.set_index("word")["scale"].to_dict() == pytest.approx(theirs, rel=1e-6)
    (hi, hi_scale), (lo, lo_scale) = sorted(theirs.items(), key=lambda kv: -kv[1])
    said = next(t for t in takeaways(_tab(at)) if t.startswith("**Takeaway:** Dynamic:"))
    found = re.fullmatch(r"\*\*Takeaway:\*\* Dynamic: the scale is computed from each input at run time — '(.+)' gets "
                         r"([\d.e+-]+), '(.+)' ([\d.e+-]+) \(([\d.]+)× as large\)\.", said)
    assert found and (found[1], found[3]) == (hi, lo), said
    assert float(found[2]) == pytest.approx(hi_scale, rel=0.006)
    assert float(found[4]) == pytest.approx(lo_scale, rel=0.006)
    assert float(found[5]) == pytest.approx(hi_scale / lo_scale, abs=0.0051)


def test_an_empty_prompt_is_an_error_message(app_env):
    at = run_app(OPEN)
    at.text_input(key="mul_prompt").set_value("   ").run()
    assert not at.exception
    assert [e.value for e in _tab(at).error] == ["the prompt is empty; type at least one word"]
    assert not _tab(at).get("vega_lite_chart")
    assert at.tabs[5].label == "Fewer bits" and not at.tabs[5].error  # the other tabs still draw


# --- the numbers as the page shows them ------------------------------------------------------------------------

_FORMAT = re.compile(r"%(?:\.(\d+))?([dfe])")  # the printf formats the tab's tables use


def _shown(value: float, fmt: str) -> float:
    """``value`` as the browser shows it under ``fmt`` (sprintf-js; Python's ``%`` writes the same digits), read
    back as a number: what a student copies off the screen."""
    assert _FORMAT.fullmatch(fmt), f"a format this test cannot read: {fmt!r}"
    return float(fmt % value)


def _unit(value: float, fmt: str) -> float:
    """One unit in the last digit ``fmt`` shows of ``value``."""
    digits, kind = _FORMAT.fullmatch(fmt).groups()
    digits = int(digits or 6)
    if kind == "d":
        return 1.0
    if kind == "f":
        return 10.0 ** -digits
    return 10.0 ** (int((fmt % value).partition("e")[2]) - digits)


def _significant(value: float, fmt: str) -> int:
    """How many significant digits of ``value`` the format shows."""
    digits, kind = _FORMAT.fullmatch(fmt).groups()
    digits = int(digits or 6)
    if kind == "e":
        return digits + 1
    magnitude = math.floor(math.log10(abs(value))) + 1 if value else 1  # digits before the point (0.05: -1)
    return max(magnitude + digits, 0) if kind == "f" else max(magnitude, 1)


def _formats(frame) -> dict:
    """The printf format the page sends for each column of a dataframe element (a column without one fails)."""
    config = json.loads(frame.proto.columns)
    table = frame.value
    missing = [c for c in table.columns if "format" not in config.get(c, {}).get("type_config", {})]
    assert not missing, f"columns shown in Streamlit's default format: {missing}"
    return {c: config[c]["type_config"]["format"] for c in table.columns}


def _not_adding_up(table, formats: dict) -> list[dict]:
    """The rows where, from the shown numbers alone, corrected × output_scale + bias is not the shown result to
    within one unit of its last digit."""
    wrong = []
    for _, row in table.iterrows():
        shown = {c: _shown(row[c], formats[c]) for c in table.columns}
        recomputed = shown["corrected"] * shown["output_scale"] + shown["bias"]
        if abs(recomputed - shown["quantized"]) > _unit(row["quantized"], formats["quantized"]) * (1 + 1e-9):
            wrong.append({**shown, "recomputed": recomputed})
    return wrong


def _check_rescale(table, formats: dict) -> None:
    """Stage 5's table can be worked through from what it shows: corrected = accumulator − zero-point term,
    quantized = corrected × output_scale + bias, error = quantized − float."""
    for _, row in table.iterrows():
        shown = {c: _shown(row[c], formats[c]) for c in table.columns}
        assert _significant(row["output_scale"], formats["output_scale"]) >= 3, (row["output_scale"], formats)
        assert shown["accumulator"] - shown["zero_point_term"] == shown["corrected"]
        assert abs(shown["quantized"] - shown["float"] - shown["error"]) <= _unit(row["error"], formats["error"]) * 2
    assert not _not_adding_up(table, formats), (_not_adding_up(table, formats), formats)


@pytest.mark.parametrize("per_channel", [False, True])
def test_stage_5_adds_up_from_the_numbers_shown(app_env, per_channel):
    at = run_app(OPEN)
    at.toggle(key="mul_pc").set_value(per_channel).run()
    assert_clean(at)
    frame = next(f for f in _tab(at).dataframe if "output_scale" in f.value.columns)
    table, formats = frame.value, _formats(frame)
    assert len(table) == 4
    _check_rescale(table, formats)
    # What the page showed before: Streamlit's default, four decimals, made output_scale 0.0005 (one digit).
    old = {**formats, "output_scale": "%.4f"}
    assert _significant(float(table["output_scale"].iloc[0]), "%.4f") < 3
    assert _not_adding_up(table, old)
    # The caption works output 0 through from the same shown numbers.
    first = table.iloc[0]
    caption = next(c.value for c in _tab(at).caption if "Output 0: " in c.value)
    found = re.search(r"Output 0: (-?\d+) × ([\d.]+)e(-?\d+) \+ (-?[\d.]+) = (-?[\d.]+)\.$", caption)
    assert found, caption
    assert int(found[1]) == first["corrected"]
    assert float(f"{found[2]}e{found[3]}") == _shown(first["output_scale"], formats["output_scale"])
    assert float(found[4]) == _shown(first["bias"], formats["bias"])
    assert float(found[5]) == _shown(first["quantized"], formats["quantized"])


def test_the_scales_shown_multiply_to_the_output_scale_shown(app_env):
    """Stage 2's activation scale × stage 4's weight scale, as shown, is stage 5's output_scale as shown."""
    at = run_app(OPEN)
    assert_clean(at)
    tab = _tab(at)
    metric = next(m.value for m in tab.metric if m.label == "Activation scale")
    activation = float(metric)
    assert len(metric.partition("e")[0].lstrip("-0.").replace(".", "")) >= 6, metric  # significant digits
    weights = next(f for f in tab.dataframe if "scale" in f.value.columns)
    outputs = next(f for f in tab.dataframe if "output_scale" in f.value.columns)
    w_format, o_format = _formats(weights)["scale"], _formats(outputs)["output_scale"]
    assert _significant(weights.value["scale"].iloc[0], w_format) >= 6
    product = activation * _shown(weights.value["scale"].iloc[0], w_format)
    output_scale = outputs.value["output_scale"].iloc[0]
    assert product == pytest.approx(_shown(output_scale, o_format), rel=1e-5)


def test_the_formats_add_up_for_large_int32_sums():
    """A 9,000-word decoder on a wide input: sums of tens of thousands still add up from the shown numbers."""
    from ui.multiply_tab import OUTPUT_FORMATS
    from wlm.dynamic_multiply import LayerInput

    from conftest import tiny_model

    model = tiny_model(9000, seed=4)
    torch.manual_seed(4)
    for per_channel in (False, True):
        result = dynamic_multiply(model, LayerInput("decoder", 3 * torch.randn(24), "w", "random"), per_channel)
        table = result.output_table()
        biggest = table.loc[table["corrected"].abs().nlargest(50).index]
        assert biggest["corrected"].abs().max() > 10_000
        _check_rescale(biggest, OUTPUT_FORMATS)
