import copy
import dataclasses

import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from wlm.errors import WlmError
from wlm.evaluate import evaluate
from wlm.model import random_model
from wlm.quantize import PRESETS, BagEmbedding, QuantSpec, preset, quantize, storage
from wlm.sizes import module_sizes, state_dict_bytes, weights_per_part

from conftest import tiny_model


def test_tutorial_architecture_sizes():
    model = random_model(33278)
    fp32 = state_dict_bytes(model)
    int8 = state_dict_bytes(quantize(model, PRESETS["tutorial"]))
    assert abs(fp32 - 113_945_374) <= 1024
    assert abs(int8 - 79_739_864) <= 1024
    parts = module_sizes(quantize(model, PRESETS["tutorial"]))
    # The float embedding is most of the int8 model: why the tutorial's model only shrinks by 30 %.
    assert parts["embedding"] / int8 > 0.8
    assert abs(sum(parts.values()) - int8) < 0.01 * int8
    emb8 = state_dict_bytes(quantize(model, PRESETS["int8+emb8"]))
    assert 25e6 < emb8 < 32e6


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset(name, trained_tiny):
    model, corpus = trained_tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = quantize(model, PRESETS[name])
    x = corpus.test[:30].view(-1, 1)
    logits, hidden = qmodel(x, qmodel.init_hidden(1))
    assert logits.shape == (30, 1, len(corpus.dictionary))
    assert hidden[0].shape == (2, 1, 24)
    seen = corpus.train[:300]
    fp = evaluate(model, seen).loss
    q = evaluate(qmodel, seen).loss
    assert fp < 1.5  # the model did learn the tiny corpus (uniform would be ln(V) ~ 2.9)
    assert abs(q - fp) < 0.05, (name, fp, q)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "float model was modified"
    assert isinstance(model.rnn, nn.LSTM) and isinstance(model.decoder, nn.Linear)
    if name != "fp32":
        assert qmodel is not model


def test_presets_quantize_what_they_say():
    model = tiny_model(50)
    q = quantize(model, PRESETS["tutorial"])
    kind = type(q.rnn).__module__ + type(q.rnn).__qualname__
    assert "DynamicQuantized" in kind or "dynamic" in type(q.rnn).__module__
    assert "dynamic" in type(q.decoder).__module__ and isinstance(q.encoder, nn.Embedding)
    assert q.decoder.weight().dtype == torch.qint8
    assert quantize(model, PRESETS["per-channel"]).decoder.weight().qscheme() == torch.per_channel_affine
    assert quantize(model, PRESETS["int8+emb8"]).encoder.weight().dtype == torch.quint8
    assert quantize(model, PRESETS["fp32"]) is model


def test_four_bit_embedding_is_right_shape_and_values():
    model = tiny_model(60)
    q = quantize(model, PRESETS["int8+emb4"])
    assert isinstance(q.encoder, BagEmbedding)
    assert q.encoder.bag.weight().dtype == torch.quint4x2
    ids = torch.tensor([[3, 7], [59, 0], [12, 12]])
    out = q.encoder(ids)
    ref = model.encoder(ids)
    assert out.shape == ref.shape == (3, 2, 32)
    # 4 bits over each row's range: error at most half a step of (max - min) / 15 per row.
    rows = model.encoder.weight[ids]
    step = (rows.amax(-1, keepdim=True) - rows.amin(-1, keepdim=True)) / 15
    assert ((out - ref).abs() <= step / 2 + 1e-3).all()
    assert (out - ref).abs().max() > 0  # really quantized


def test_quant_spec_is_hashable_and_validated():
    a, b = QuantSpec(lstm=True, linear=True), PRESETS["tutorial"]
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.label == "tutorial" and QuantSpec(linear=True).label == "linear qint8"
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'lstm'"):
        a.lstm = False  # frozen: a spec is a cache key
    with pytest.raises(WlmError, match="dtype"):
        QuantSpec(lstm=True, dtype="int4")
    with pytest.raises(WlmError, match="embedding bits"):
        QuantSpec(embedding=True, embedding_bits=2)
    with pytest.raises(WlmError, match="per-channel"):
        QuantSpec(linear=True, per_channel=True, dtype="float16")
    with pytest.raises(WlmError, match="unknown variant 'int3'"):
        preset("int3")


class _BagLookup(nn.Module):
    """An embedding lookup through ``nn.EmbeddingBag`` (one index per bag), written here from torch's API alone."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.bag = nn.EmbeddingBag.from_pretrained(embedding.weight.detach().clone(), freeze=False, mode="sum")

    def forward(self, ids):
        flat = ids.reshape(-1)
        return self.bag(flat, torch.arange(flat.numel())).reshape(*ids.shape, -1)


# Each preset as torch's own quantize_dynamic call, with torch's public qconfigs: what the preset promises.
INT8 = {nn.LSTM: tq.default_dynamic_qconfig, nn.Linear: tq.default_dynamic_qconfig}
REFERENCE_CALLS = {
    "tutorial": INT8,
    "per-channel": {nn.LSTM: tq.default_dynamic_qconfig, nn.Linear: tq.per_channel_dynamic_qconfig},
    "float16": {nn.LSTM: tq.float16_dynamic_qconfig, nn.Linear: tq.float16_dynamic_qconfig},
    "int8+emb8": {**INT8, nn.Embedding: tq.float_qparams_weight_only_qconfig},
    "int8+emb4": {**INT8, nn.EmbeddingBag: tq.float_qparams_weight_only_qconfig_4bit},
}


def test_every_quantizing_preset_has_a_reference_call():
    assert set(REFERENCE_CALLS) == {name for name in PRESETS if name != "fp32"}


@pytest.mark.parametrize("name", sorted(REFERENCE_CALLS))
def test_variants_share_float_parts_and_match_a_full_copy(name):
    model = tiny_model(80)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = PRESETS[name]
    variant = quantize(model, spec)
    assert (variant.encoder is model.encoder) == (not spec.embedding)
    assert (variant.rnn is model.rnn) == (not spec.lstm)
    assert (variant.decoder is model.decoder) == (not spec.linear)
    # Same outputs as quantizing a full deep copy the plain way.
    reference = copy.deepcopy(model)
    if nn.EmbeddingBag in REFERENCE_CALLS[name]:  # a 4-bit nn.Embedding gives rows of the wrong width in torch 2.13
        reference.encoder = _BagLookup(reference.encoder)
    reference = tq.quantize_dynamic(reference.eval(), REFERENCE_CALLS[name])
    x = torch.randint(80, (12, 1), generator=torch.Generator().manual_seed(1))
    assert torch.equal(variant(x, variant.init_hidden(1))[0], reference(x, reference.init_hidden(1))[0])
    # The float model is untouched: weights, module types, and no quantization settings left on it.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert isinstance(model.rnn, nn.LSTM) and isinstance(model.decoder, nn.Linear)
    assert not any(hasattr(m, "qconfig") for m in model.modules())


def test_variants_built_from_shared_parts_equal_fresh_ones():
    model = tiny_model(80)
    parts: dict = {}
    tutorial = quantize(model, PRESETS["tutorial"], parts)
    assert len(parts) == 2  # the LSTM and the decoder
    with_embedding = quantize(model, PRESETS["int8+emb8"], parts)
    # Only the embedding was quantized anew; the LSTM and decoder are the tutorial variant's.
    assert with_embedding.rnn is tutorial.rnn and with_embedding.decoder is tutorial.decoder
    assert with_embedding.encoder is not model.encoder and len(parts) == 3
    per_channel = quantize(model, PRESETS["per-channel"], parts)
    assert per_channel.rnn is tutorial.rnn and per_channel.decoder is not tutorial.decoder
    x = torch.randint(80, (12, 1), generator=torch.Generator().manual_seed(2))
    for name, variant in (("int8+emb8", with_embedding), ("per-channel", per_channel), ("tutorial", tutorial)):
        fresh = quantize(model, PRESETS[name])
        assert torch.equal(variant(x, variant.init_hidden(1))[0], fresh(x, fresh.init_hidden(1))[0]), name
    # Building variants never switches the float model's own modules out of training mode.
    model.train()
    quantize(model, PRESETS["int8+emb4"], parts)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name", list(PRESETS))
def test_quantizing_keeps_every_weight_and_says_how_it_is_stored(name):
    model = tiny_model(80)
    spec = PRESETS[name]
    counts = weights_per_part(model)
    # Embedding 80x32; 2 LSTM layers of 4 gates x 24 (weights and both biases); decoder 80x24 + 80.
    assert counts == {"embedding": 80 * 32, "lstm": 96 * 32 + 96 * 24 + 2 * 96 + 96 * 24 * 2 + 2 * 96,
                      "decoder": 80 * 24 + 80}
    assert weights_per_part(quantize(model, spec)) == counts
    assert sum(weights_per_part(quantize(model, spec)).values()) == sum(p.numel() for p in model.parameters())
    stored = storage(spec)
    assert (stored["embedding"] == "float32") == (not spec.embedding)
    assert (stored["lstm"] == "float32") == (not spec.lstm)
    assert ("float16" in stored["decoder"]) == (spec.dtype == "float16")
    assert ("per row" in stored["decoder"]) == spec.per_channel
