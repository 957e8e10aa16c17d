"""The two lessons' charts: one dynamic multiply stage by stage (``ui/charts/multiply.py``), fewer bits
(``ui/charts/bits.py``)."""
import pytest

from ui.charts import bits, multiply
from ui.charts.style import SCHEME_COLORS
from wlm.dynamic_multiply import dynamic_multiply, input_from_prompt, moved_scores, scales_of
from wlm.low_bits import SCHEMES, bits_histogram, sweep


def _heights(spec: dict) -> list[int]:
    found = [spec["height"]] if isinstance(spec.get("height"), int) else []
    for layer in spec.get("layer", []):
        found += _heights(layer)
    return found


def _valid(figure) -> dict:
    spec = figure.chart.to_dict()  # validates against the Vega-Lite schema
    assert figure.takeaway.endswith(".") and len(figure.takeaway) < 400
    assert _heights(spec) and min(_heights(spec)) >= 150  # readable on a 720-line projector
    assert spec["config"]["axis"]["labelFontSize"] >= 14
    return spec


@pytest.mark.parametrize("per_channel", [False, True])
def test_every_stage_of_a_multiply_has_a_chart(trained_tiny, per_channel):
    model, corpus = trained_tiny
    item = input_from_prompt(model, corpus.dictionary, "decoder", "the cat sat on the")
    result = dynamic_multiply(model, item, per_channel)
    assert f"{result.x_min:.3f}" in multiply.activation_chart(result).takeaway
    _valid(multiply.activation_chart(result))
    other = input_from_prompt(model, corpus.dictionary, "decoder", "zebra")
    scales = _valid(multiply.scales_chart(scales_of([item, other])))
    assert "Dynamic" in multiply.scales_chart(scales_of([item, other])).takeaway and scales
    assert "0–127" in multiply.codes_chart(result).takeaway
    _valid(multiply.codes_chart(result))
    weights = multiply.weights_chart(result)
    _valid(weights)
    assert ("per row" in weights.takeaway) == per_channel
    _valid(multiply.accumulation_chart(result))
    error = multiply.error_chart(result)
    _valid(error)
    assert f"{result.sqnr_db:.1f} dB" in error.takeaway
    moved = moved_scores(result, corpus.dictionary, k=5)
    figure = multiply.moved_scores_chart(moved)
    _valid(figure)
    assert moved["word"].iloc[0] in figure.takeaway


def test_two_inputs_with_one_word_get_a_bar_each(trained_tiny):
    model, corpus = trained_tiny
    items = [input_from_prompt(model, corpus.dictionary, "decoder", p) for p in ("the cat sat on the", "a dog on the")]
    spec = _valid(multiply.scales_chart(scales_of(items)))
    labels = [row["input"] for row in next(iter(spec["datasets"].values()))]
    assert labels == ["the (input 1)", "the (input 2)"] == spec["encoding"]["y"]["sort"]


def _colour_domain(spec: dict) -> tuple[list, list[int]]:
    codes = [row["code"] for row in next(iter(spec["datasets"].values()))]
    return spec["encoding"]["color"]["scale"]["domain"], codes


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_weight_heatmap_colours_cover_the_codes_shown(trained_tiny, per_channel):
    model, corpus = trained_tiny
    result = dynamic_multiply(model, input_from_prompt(model, corpus.dictionary, "decoder", "the cat"), per_channel)
    figure = multiply.weights_chart(result)
    (low, high), codes = _colour_domain(_valid(figure))
    reach = max(abs(c) for c in codes)
    assert (low, high) == (-reach, reach)  # symmetric: 0 is white, and the darkest colour is a code shown
    assert f"±{reach} " in figure.takeaway and "int8 runs -128 to 127" in figure.takeaway


def test_small_int8_weights_are_not_drawn_on_the_whole_int8_scale():
    """One large weight far from the shown corner sets the tensor's scale: the shown codes are small, and the
    colours span them, not ±127 (on which they would all be nearly white)."""
    import torch

    from wlm.dynamic_multiply import LayerInput

    from conftest import tiny_model

    model = tiny_model(50, seed=3)
    with torch.no_grad():
        model.decoder.weight[-1, -1] = 10 * model.decoder.weight.abs().max()
    result = dynamic_multiply(model, LayerInput("decoder", torch.randn(24), "w", "random"))
    assert int(abs(result.w_codes).max()) == 127  # the tensor does reach int8's end
    figure = multiply.weights_chart(result)
    spec = _valid(figure)
    (low, high), codes = _colour_domain(spec)
    reach = max(abs(c) for c in codes)
    assert 0 < reach < 30 and (low, high) == (-reach, reach)
    assert "-128…127" in str(spec["encoding"]["color"]["title"])  # the legend names int8's full range
    assert "codes reach -" in figure.takeaway and "to 127." in figure.takeaway


def test_bits_charts(trained_tiny):
    model, corpus = trained_tiny
    table = sweep(model, corpus.train, bits=(8, 5, 3, 2), max_tokens=200)
    figure = bits.bits_loss_chart(table)
    spec = _valid(figure)
    assert "real int8" in str(spec) and "per-row" in figure.takeaway
    hist = bits.bits_histogram_chart(bits_histogram(model, "rnn.weight_ih_l1", 3))
    spec = _valid(hist)
    assert "8 levels" in hist.takeaway and len(spec["layer"]) == 2
    dense = bits.bits_histogram_chart(bits_histogram(model, "decoder.weight", 8, "per-row"))
    assert len(_valid(dense)["layer"]) == 1  # 256 rules would hide the bars
    grouped = bits.bits_histogram_chart(bits_histogram(model, "rnn.weight_ih_l0", 3, "per-group", group_size=16),
                                        group_size=16)
    assert "grid of the group of 16 with the largest scale" in grouped.takeaway and len(_valid(grouped)["layer"]) == 2


def test_the_size_chart_counts_each_schemes_scales(trained_tiny):
    model, corpus = trained_tiny
    table = sweep(model, corpus.train, bits=(8, 4, 2), max_tokens=100, schemes=SCHEMES, group_size=8)
    figure = bits.bits_size_chart(table)
    spec = _valid(figure)
    assert spec["layer"][0]["encoding"]["y"]["scale"]["type"] == "symlog"
    rows = [row for data in spec["datasets"].values() for row in data if row.get("scheme") in SCHEMES]
    assert len(rows) == len(SCHEMES) * 3
    colours = spec["layer"][0]["encoding"]["color"]["scale"]
    assert colours["range"] == [SCHEME_COLORS[s] for s in SCHEMES] and len(set(colours["range"])) == len(SCHEMES)
    at4 = table[table["bits"] == 4].set_index("scheme")["bits_per_weight"]
    assert f"per-group 8 {at4['per-group']:.2f} bits a weight" in figure.takeaway
    assert at4["per-tensor"] < at4["per-row"] < at4["per-group"] < at4["per-group-asym"]
    loss = bits.bits_loss_chart(table).chart.to_dict()  # five schemes' cliffs make a longer sentence than one chart's
    assert loss["layer"][0]["encoding"]["color"]["scale"]["range"] == colours["range"]


def test_large_decoder_charts_stay_light():
    """A vocabulary-sized decoder: the error chart keeps the worst outputs and thins the rest."""
    import torch

    from wlm.dynamic_multiply import LayerInput

    from conftest import tiny_model

    model = tiny_model(9000, seed=2)
    result = dynamic_multiply(model, LayerInput("decoder", torch.randn(24), "w", "random"))
    spec = _valid(multiply.error_chart(result))
    rows = next(iter(spec["datasets"].values()))
    assert len(rows) <= 4000
    assert max(abs(r["error"]) for r in rows) == pytest.approx(float(abs(result.error).max()))
