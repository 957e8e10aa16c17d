import json

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd

from wlm.errors import WlmError
from wlm.evaluate import evaluate
from wlm.fidelity import output_fidelity
from wlm.low_bits import FLOAT_BITS, Rounding, simulate, simulate_weights, stored_mb
from wlm.quantize import preset, quantize
from wlm.sensitivity import (
    FLOAT,
    REAL,
    Cell,
    SplitLSTM,
    frontier,
    map_cells,
    measure,
    mixed_model,
    part_mb,
    part_weights,
    parts,
    pick,
    quantize_part,
    readable_map,
    sensitivity,
    split_model,
    takeaway,
    tradeoff,
    uniform_mix,
    worst_part,
)
from wlm.torch_internals import packed_lstm_weights

from conftest import tiny_model
from test_cli import run


@pytest.fixture(scope="module")
def tiny_map(trained_tiny):
    model, corpus = trained_tiny
    return sensitivity(model, corpus.test, bits=(8, 4, 2), max_tokens=None)


def test_split_lstm_computes_what_the_stacked_one_does(trained_tiny):
    model, corpus = trained_tiny
    split = split_model(model)
    assert isinstance(split.rnn, SplitLSTM) and model.rnn.__class__ is nn.LSTM  # the float model keeps its LSTM
    assert all(isinstance(layer, nn.LSTM) and layer.num_layers == 1 for layer in split.rnn.layers)
    # the same tensors, not copies
    assert split.rnn.layers[1].weight_hh_l0.data_ptr() == model.rnn.weight_hh_l1.data_ptr()
    ids = corpus.test[:100].reshape(-1, 1)
    hidden = [model.init_hidden(1), model.init_hidden(1)]
    for start in range(0, 100, 25):  # the hidden state carried from chunk to chunk, as an evaluation does
        chunk = ids[start:start + 25]
        (a, hidden[0]), (b, hidden[1]) = model(chunk, hidden[0]), split(chunk, hidden[1])
        assert torch.equal(a, b)
        assert all(torch.equal(x, y) for x, y in zip(hidden[0], hidden[1]))
    assert evaluate(split, corpus.test).loss == evaluate(model, corpus.test).loss


def test_one_layer_quantized_alone_uses_torchs_kernel_for_that_layer_only(trained_tiny):
    model, corpus = trained_tiny
    layers = quantize_part(model, "lstm.1").rnn.layers
    assert isinstance(layers[1], nnqd.LSTM)
    assert type(layers[0]) is nn.LSTM and layers[0].weight_ih_l0 is model.rnn.weight_ih_l0
    # its int8 weights are the ones the tutorial's whole-model quantize gives that layer
    alone = packed_lstm_weights(layers[1])["weight"]
    whole = packed_lstm_weights(quantize(model, preset("tutorial")).rnn)["weight"]
    for name in ("weight_ih", "weight_hh"):
        assert torch.equal(alone[f"{name}_l0"].int_repr(), whole[f"{name}_l1"].int_repr())
        assert alone[f"{name}_l0"].q_scale() == whole[f"{name}_l1"].q_scale()
    assert type(model.rnn) is nn.LSTM  # untouched
    decoder = quantize_part(model, "decoder")
    assert isinstance(decoder.decoder, nnqd.Linear) and decoder.rnn is model.rnn
    assert type(quantize_part(model, "embedding").encoder).__name__ == "Embedding"
    assert quantize_part(model, "embedding").encoder is not model.encoder


@pytest.mark.parametrize("cell", [Cell("lstm.0", REAL, 8), Cell("decoder", REAL, 8), Cell("embedding", REAL, 8),
                                  Cell("lstm.1", "per-row", 4), Cell("decoder", "per-group", 2, 64),
                                  Cell("embedding", "per-tensor", 2), Cell("embedding", "per-group-asym", 4, 64)])
def test_each_cell_is_the_fidelity_of_that_part_quantized_alone(trained_tiny, tiny_map, cell):
    """The map's side-by-side passes give what scoring the part-quantized model on its own gives."""
    model, corpus = trained_tiny
    if cell.scheme == REAL:
        alone = quantize_part(model, cell.part)
        row = tiny_map[(tiny_map["part"] == cell.part) & (tiny_map["scheme"] == REAL)].iloc[0]
    else:
        alone = simulate_weights(model, {n: cell.rounding for n in part_weights(model, cell.part)})
        table = (tiny_map if cell.scheme in ("per-row", "per-group", "per-tensor")
                 else sensitivity(model, corpus.test, bits=(4,), schemes=(cell.scheme,), max_tokens=None))
        row = table[(table["part"] == cell.part) & (table["scheme"] == cell.scheme)
                    & (table["bits"] == cell.bits)].iloc[0]
    expected = output_fidelity(model, alone, corpus.test)
    assert row["tokens"] == expected.tokens
    assert row["delta_loss"] == pytest.approx(expected.delta_loss, abs=2e-6)
    assert row["kl_mean"] == pytest.approx(expected.kl_mean, rel=1e-3, abs=1e-6)
    assert row["top1_agreement"] == pytest.approx(expected.top1_agreement, abs=0.5 / expected.tokens)


def test_map_has_every_part_and_cell_and_names_the_costliest(trained_tiny, tiny_map):
    model, _ = trained_tiny
    assert parts(model) == ["embedding", "lstm.0", "lstm.1", "decoder"]
    assert len(tiny_map) == len(map_cells(model, bits=(8, 4, 2))) == 4 * (1 + 3 * 3)
    assert list(tiny_map.columns) == ["part", "scheme", "group_size", "bits", "loss", "delta_loss", "kl_mean",
                                      "top1_agreement", "size_mb", "tokens"]
    assert (tiny_map["kl_mean"] >= 0).all()
    two = tiny_map[tiny_map["bits"] == 2]
    eight = tiny_map[(tiny_map["bits"] == 8) & (tiny_map["scheme"] != REAL)]
    assert two["kl_mean"].mean() > 10 * eight["kl_mean"].mean()  # fewer bits cost more
    worst = worst_part(tiny_map)
    least_kl = two.groupby("part")["kl_mean"].min()
    assert worst == least_kl.idxmax()
    assert takeaway(tiny_map).startswith({"embedding": "embedding", "decoder": "decoder"}.get(
        worst, f"LSTM layer {worst[-1]}"))
    wide = readable_map(tiny_map)
    assert list(wide.columns) == ["part", "scheme", "8 bits", "4 bits", "2 bits"] and len(wide) == 4 * 4


def test_sizes_count_codes_scales_and_float_biases(trained_tiny):
    model, _ = trained_tiny
    state = model.state_dict()
    layer = {n: state[n] for n in state if n.endswith("_l1")}
    floats = sum(t.numel() for t in layer.values())
    assert part_mb(model, Cell("lstm.1", FLOAT, FLOAT_BITS)) == pytest.approx(floats * 4 / 1e6)
    weights = [state["rnn.weight_ih_l1"], state["rnn.weight_hh_l1"]]
    biases = floats - sum(w.numel() for w in weights)
    # 4 bits a weight, a float16 scale per row (24 inputs each: one group covers the row)
    rows = sum(w.shape[0] for w in weights)
    expected_bits = sum(w.numel() for w in weights) * 4 + rows * 16 + biases * 32
    assert part_mb(model, Cell("lstm.1", "per-group", 4, 64)) == pytest.approx(expected_bits / 8 / 1e6)
    total = sum(part_mb(model, Cell(p, FLOAT, FLOAT_BITS)) for p in parts(model))
    assert total == pytest.approx(stored_mb(state, {}))


def test_frontier_and_budget_pick(trained_tiny, tiny_map):
    model, corpus = trained_tiny
    front = frontier(model, tiny_map)
    sizes = [m.size_mb for m in front]
    kls = [m.predicted_kl for m in front]
    assert sizes == sorted(sizes) and kls == sorted(kls, reverse=True)  # each bigger pick costs less
    assert front[-1].predicted_kl == 0 and front[-1].size_mb == pytest.approx(stored_mb(model.state_dict(), {}))
    for budget in [front[0].size_mb, (front[0].size_mb + front[-1].size_mb) / 2, front[-1].size_mb * 0.3, 1e9]:
        if budget < front[0].size_mb:
            continue
        chosen = pick(model, tiny_map, budget)
        assert chosen.size_mb <= budget
        # no uniform choice within the budget beats it by the map's own measure
        for scheme in ("per-tensor", "per-row", "per-group"):
            for bits in (8, 4, 2):
                uniform = uniform_mix(model, tiny_map, scheme, bits)
                if uniform.size_mb <= budget:
                    assert chosen.predicted_kl <= uniform.predicted_kl + 1e-12
    chosen = pick(model, tiny_map, front[len(front) // 2].size_mb)
    measured = measure(model, chosen, corpus.test, max_tokens=None)
    expected = evaluate(mixed_model(model, chosen), corpus.test).loss - evaluate(model, corpus.test).loss
    assert measured.delta_loss == pytest.approx(expected)
    assert set(measured.to_dict()) >= {"bits", "size_mb", "delta_loss"}
    assert set(measured.to_dict()["bits"]) == set(parts(model))


def test_a_uniform_mix_is_the_simulated_whole_model(trained_tiny, tiny_map):
    model, corpus = trained_tiny
    uniform = uniform_mix(model, tiny_map, "per-row", 4)
    a = evaluate(mixed_model(model, uniform), corpus.test).loss
    b = evaluate(simulate(model, 4, "per-row", embedding=True), corpus.test).loss
    assert a == b
    assert uniform.size_mb == pytest.approx(sum(part_mb(model, c) for c in uniform.cells.values()))


def test_tradeoff_measures_uniform_choices_and_mixes_of_their_size(trained_tiny, tiny_map):
    model, corpus = trained_tiny
    budget = frontier(model, tiny_map)[len(frontier(model, tiny_map)) // 3].size_mb
    cache: dict = {}
    table, chosen = tradeoff(model, tiny_map, corpus.test, budget, max_tokens=200, cache=cache)
    assert set(table["kind"]) == {"uniform", "mix", "pick"}
    assert (table["kind"] == "uniform").sum() == 9  # 3 schemes × 3 widths
    assert chosen.size_mb <= budget and chosen.delta_loss == table.iloc[-1]["delta_loss"]
    uniform = table[table["kind"] == "uniform"].iloc[0]
    rows = uniform_mix(model, tiny_map, "per-tensor", 8)
    float_loss = evaluate(model, corpus.test, max_tokens=200).loss
    assert uniform["delta_loss"] == pytest.approx(evaluate(mixed_model(model, rows), corpus.test,
                                                           max_tokens=200).loss - float_loss)
    calls = len(cache)
    again, _ = tradeoff(model, tiny_map, corpus.test, budget, max_tokens=200, cache=cache)
    assert len(cache) == calls and again.equals(table)


@pytest.mark.parametrize("call, message", [
    (lambda m, d, t: sensitivity(m, d, bits=(9,)), "bits must be"),
    (lambda m, d, t: sensitivity(m, d, schemes=("per-column",)), "unknown scheme"),
    (lambda m, d, t: sensitivity(m, d, group_size=1), "group size"),
    (lambda m, d, t: sensitivity(m, d, max_tokens=1), "max_tokens"),
    (lambda m, d, t: pick(m, t, 0), "budget"),
    (lambda m, d, t: pick(m, t, 1e-6), "no mix of the map's cells fits"),
    (lambda m, d, t: part_weights(m, "lstm.7"), "unknown part"),
    (lambda m, d, t: simulate_weights(m, {"rnn.bias_ih_l0": Rounding(4)}), "cannot round"),
])
def test_bad_input(trained_tiny, tiny_map, call, message):
    model, corpus = trained_tiny
    with pytest.raises(WlmError, match=message):
        call(model, corpus.test, tiny_map)


def test_cli_sensitivity_rows_and_mix(trained_tiny, tiny_dir, tmp_path):
    from wlm.bundle import save_bundle

    model, corpus = trained_tiny
    bundle = tmp_path / "bundle"
    save_bundle(model, corpus.dictionary, bundle, {"name": "tiny"}, dtype=torch.float32)
    out = run("sensitivity", "--checkpoint", str(bundle), "--data", str(tiny_dir), "--bits", "8,2",
              "--max-tokens", "80", "--budget-mb", "0.05", "--format", "json", check_rc=0)
    found = json.loads(out.stdout)
    assert {"part", "scheme", "bits", "delta_loss", "kl_mean"} <= set(found["rows"][0])
    assert {r["scheme"] for r in found["rows"]} == {"real int8", "per-tensor", "per-row", "per-group"}
    mix = found["mix"]
    assert mix["size_mb"] <= 0.05 and set(mix["bits"]) == {"embedding", "lstm.0", "lstm.1", "decoder"}
    assert isinstance(mix["delta_loss"], float)
    assert "costs most" in out.stderr and "mix within 0.05 MB" in out.stderr
    md = run("sensitivity", "--checkpoint", str(bundle), "--data", str(tiny_dir), "--bits", "4",
             "--schemes", "per-group-asym", "--group-size", "8", "--max-tokens", "60", check_rc=0).stdout
    assert "| LSTM layer 1 | per-group 8 asym |" in md
    bad = run("sensitivity", "--checkpoint", str(bundle), "--data", str(tiny_dir), "--budget-mb", "-1")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "budget" in bad.stderr


@pytest.mark.slow
def test_bundled_model_map_real_numbers(real_corpus):
    """On the bundled model: every part survives real int8; at 4 bits per tensor the decoder is ruinous."""
    from wlm.bundle import load_bundle

    model = load_bundle().model
    table = sensitivity(model, real_corpus.test, bits=(4,), schemes=("per-tensor", "per-group"), max_tokens=300)
    real = table[table["scheme"] == REAL]
    assert len(real) == 7 and (real["delta_loss"].abs() < 0.02).all() and (real["kl_mean"] < 0.01).all()
    decoder = table[(table["part"] == "decoder") & (table["scheme"] == "per-tensor")].iloc[0]
    assert decoder["delta_loss"] > 1.0
    assert worst_part(table) == "decoder"
    grouped = table[(table["part"] == "decoder") & (table["scheme"] == "per-group")].iloc[0]
    assert grouped["kl_mean"] < decoder["kl_mean"] / 10


def test_tiny_model_without_training_is_accepted():
    model = tiny_model(30, nlayers=3)
    table = sensitivity(model, torch.randint(0, 30, (60,)), bits=(3,), schemes=("per-row",), max_tokens=None)
    assert list(dict.fromkeys(table["part"])) == ["embedding", "lstm.0", "lstm.1", "lstm.2", "decoder"]
