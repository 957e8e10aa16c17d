import numpy as np
import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from wlm.dynamic_multiply import (
    LayerInput,
    _lstm_layer,
    activation_qparams,
    dynamic_multiply,
    input_from_position,
    input_from_prompt,
    layer_names,
    moved_scores,
    scales_of,
)
from wlm.errors import WlmError

from conftest import tiny_model


def qconfig(per_channel):
    return tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig


def torch_linear(weight, bias, x, per_channel):
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    linear.weight.data.copy_(weight)
    linear.bias.data.copy_(bias)
    quantized = tq.quantize_dynamic(nn.Sequential(linear), {nn.Linear: qconfig(per_channel)})[0]
    with torch.no_grad():
        return quantized(x.view(1, -1))[0]


def assert_close(ours, theirs):
    ours = torch.as_tensor(ours)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max(), float((ours - theirs).abs().max())


@pytest.mark.parametrize("per_channel", [False, True])
def test_decoder_matches_torch_on_random_weights(per_channel):
    model = tiny_model(300, seed=3)
    with torch.no_grad():
        model.decoder.bias.uniform_(-0.5, 0.5)
    for seed in range(3):
        x = torch.randn(24, generator=torch.Generator().manual_seed(seed)) * (seed + 1) + 0.3
        result = dynamic_multiply(model, LayerInput("decoder", x, "w", "random"), per_channel=per_channel)
        assert_close(result.output, torch_linear(model.decoder.weight, model.decoder.bias, x, per_channel))
        assert 0 <= result.x_codes.min() and result.x_codes.max() <= 127  # fbgemm's reduce_range
        assert len(result.w_scales) == (300 if per_channel else 1)
        assert result.sqnr_db > 20


@pytest.mark.parametrize("per_channel", [False, True])
def test_every_layer_matches_torch_on_trained_weights(trained_tiny, per_channel):
    model, corpus = trained_tiny
    for layer in layer_names(model):
        item = input_from_prompt(model, corpus.dictionary, layer, "the cat sat on the")
        result = dynamic_multiply(model, item, per_channel=per_channel)
        weight, bias = (model.decoder.weight, model.decoder.bias) if layer == "decoder" else (
            getattr(model.rnn, layer.split(".")[1]), getattr(model.rnn, layer.split(".")[1].replace("weight", "bias")))
        assert_close(result.output, torch_linear(weight.detach(), bias.detach(), item.vector, per_channel))


def test_full_range_activation_would_not_match(trained_tiny):
    """0-255 instead of fbgemm's 0-127 gives a visibly different result: the range is what torch uses."""
    model, corpus = trained_tiny
    item = input_from_prompt(model, corpus.dictionary, "decoder", "a dog sat on the")
    theirs = torch_linear(model.decoder.weight.detach(), model.decoder.bias.detach(), item.vector, False)
    ours = dynamic_multiply(model, item)
    import wlm.dynamic_multiply as dm
    scale, zero = activation_qparams(item.vector, 0, 255)
    codes = dm.quantize_activation(item.vector, scale, zero, 0, 255)
    w = torch.from_numpy(ours.w_codes).double()
    full = ((w @ (codes - zero).double()) * scale * float(ours.w_scales[0])).float() + model.decoder.bias.detach()
    assert (full - theirs).abs().max() > 100 * (torch.from_numpy(ours.output) - theirs).abs().max()


@pytest.mark.parametrize("weights", ["trained", "random"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_lstm_cell_gates_match_quantized_lstm(trained_tiny, per_channel, weights):
    """Gates = W_ih x + b_ih + W_hh h + b_hh, each by our stages, then the cell: torch's quantized LSTM step."""
    model, corpus = trained_tiny
    if weights == "random":
        model = tiny_model(len(corpus.dictionary), seed=5)
    for k in range(model.rnn.num_layers):
        x = input_from_prompt(model, corpus.dictionary, f"rnn.weight_ih_l{k}", "the dog sat on the")
        h = input_from_prompt(model, corpus.dictionary, f"rnn.weight_hh_l{k}", "the dog sat on the")
        c = torch.randn(model.nhid, generator=torch.Generator().manual_seed(k))
        gates = torch.from_numpy(dynamic_multiply(model, x, per_channel).output
                                 + dynamic_multiply(model, h, per_channel).output)
        i, f, g, o = gates.chunk(4)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        quantized = tq.quantize_dynamic(nn.Sequential(_lstm_layer(model, k)), {nn.LSTM: qconfig(per_channel)})[0]
        with torch.no_grad():
            _, (h_q, c_q) = quantized(x.vector.view(1, 1, -1), (h.vector.view(1, 1, -1), c.view(1, 1, -1)))
        tolerance = 1e-5 * gates.abs().max()
        assert (h_next - h_q.flatten()).abs().max() <= tolerance
        assert (c_next - c_q.flatten()).abs().max() <= tolerance


@pytest.mark.parametrize("per_channel", [False, True])
def test_output_table_is_the_rescale_written_out(trained_tiny, per_channel):
    """Each row of the table stage 5 shows: accumulator − zero_point_term = corrected, and corrected × output_scale +
    bias = quantized, as the kernel computes it in float32."""
    model, corpus = trained_tiny
    result = dynamic_multiply(model, input_from_prompt(model, corpus.dictionary, "decoder", "the cat"), per_channel)
    table = result.output_table()
    assert list(table.columns) == ["index", "accumulator", "zero_point_term", "corrected", "output_scale", "bias",
                                   "quantized", "float", "error"]
    assert (table["accumulator"] - table["zero_point_term"] == table["corrected"]).all()
    sums = result.x_zero_point * result.w_codes.astype(np.int64).sum(axis=1)
    assert (table["zero_point_term"] == sums).all()
    rescaled = (table["corrected"].to_numpy(np.float32) * table["output_scale"].to_numpy(np.float32)
                + table["bias"].to_numpy(np.float32))
    assert np.array_equal(rescaled, table["quantized"].to_numpy())
    assert np.allclose(table["output_scale"], result.x_scale * result.w_scales.astype(np.float64), rtol=1e-6)


def test_two_inputs_get_two_scales(trained_tiny):
    model, corpus = trained_tiny
    items = [input_from_prompt(model, corpus.dictionary, "decoder", p) for p in ("the cat", "zebra")]
    table = scales_of(items)
    assert table["scale"].nunique() == 2
    results = [dynamic_multiply(model, item) for item in items]
    assert results[0].x_scale != results[1].x_scale


def test_input_helpers_follow_the_float_model(trained_tiny):
    model, corpus = trained_tiny
    ids, _ = corpus.dictionary.encode("the cat sat".split())
    with torch.no_grad():
        out, _ = model.rnn(model.encoder(torch.tensor(ids).view(-1, 1)), model.init_hidden(1))
        emb = model.encoder.weight[ids[-1]]
    assert torch.allclose(input_from_prompt(model, corpus.dictionary, "decoder", "the cat sat").vector, out[-1, 0],
                          atol=1e-6)
    assert torch.equal(input_from_prompt(model, corpus.dictionary, "rnn.weight_ih_l0", "the cat sat").vector, emb)
    first = input_from_prompt(model, corpus.dictionary, "rnn.weight_hh_l1", "zebra")
    assert not first.vector.any()  # nothing came before the first word
    at = input_from_position(model, corpus.dictionary, corpus.test, "decoder", 12)
    assert at.word == corpus.dictionary.idx2word[int(corpus.test[12])]


def test_moved_scores_names_decoder_words(trained_tiny):
    model, corpus = trained_tiny
    result = dynamic_multiply(model, input_from_prompt(model, corpus.dictionary, "decoder", "the"))
    table = moved_scores(result, corpus.dictionary, k=5)
    assert len(table) == 5 and set(table["word"]) <= set(corpus.dictionary.idx2word)
    assert np.all(np.diff(table["prob_change"].abs().to_numpy()) <= 1e-12)
    with pytest.raises(WlmError, match="decoder"):
        moved_scores(dynamic_multiply(model, input_from_prompt(model, corpus.dictionary, "rnn.weight_hh_l0", "a dog")),
                     corpus.dictionary)


@pytest.mark.parametrize("layer, prompt, message", [
    ("rnn.weight_ih_l9", "the cat", "unknown layer"),
    ("encoder", "the cat", "unknown layer"),
    ("decoder", "   ", "empty"),
])
def test_bad_input(trained_tiny, layer, prompt, message):
    model, corpus = trained_tiny
    with pytest.raises(WlmError, match=message):
        input_from_prompt(model, corpus.dictionary, layer, prompt)


def test_bad_position(trained_tiny):
    model, corpus = trained_tiny
    with pytest.raises(WlmError, match="position"):
        input_from_position(model, corpus.dictionary, corpus.test, "decoder", len(corpus.test))


def test_all_zero_input_matches_torch(trained_tiny):
    """The first word's recurrent input is all zeros: torch then uses scale 0.1 and the output is the bias."""
    model, corpus = trained_tiny
    item = input_from_prompt(model, corpus.dictionary, "rnn.weight_hh_l0", "the")
    result = dynamic_multiply(model, item)
    assert result.x_scale == pytest.approx(0.1) and not result.accumulator.any()
    theirs = torch_linear(model.rnn.weight_hh_l0.detach(), model.rnn.bias_hh_l0.detach(), item.vector, False)
    assert_close(result.output, theirs)
    assert np.allclose(result.output, model.rnn.bias_hh_l0.detach().numpy())
