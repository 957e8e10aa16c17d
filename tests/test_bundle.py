"""The shipped model: integrity, vocabulary, and the card's own figures, each checked against the files themselves."""
import hashlib
import json
import math

import pytest
import torch
from safetensors import safe_open

from wlm.bundle import BUNDLED_MODEL, load_bundle
from wlm.evaluate import evaluate
from wlm.quantize import PRESETS, quantize

pytestmark = pytest.mark.skipif(not (BUNDLED_MODEL / "card.json").is_file(), reason="no bundled model in assets/")

WEIGHTS = BUNDLED_MODEL / "model.safetensors"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLED_MODEL)


@pytest.fixture(scope="module")
def card():
    return json.loads((BUNDLED_MODEL / "card.json").read_text())


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    with safe_open(str(WEIGHTS), "pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


@pytest.fixture(scope="module")
def float_5000(bundle, real_corpus) -> float:
    return evaluate(bundle.model, real_corpus.test, max_tokens=5000).loss


def test_bundle_sha_matches_card(bundle, card):
    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()  # hashed here, not by wlm
    assert digest == card["weights_sha256"] == bundle.card["weights_sha256"]


def test_card_config_is_the_shape_of_the_weights_file(bundle, card, tensors):
    ntoken, ninp = tensors["encoder.weight"].shape
    nlayers = sum(1 for name in tensors if name.startswith("rnn.weight_hh_l"))
    nhid = tensors["rnn.weight_hh_l0"].shape[1]
    assert tensors["rnn.weight_ih_l0"].shape == (4 * nhid, ninp) and tensors["decoder.weight"].shape == (ntoken, nhid)
    # The tutorial's architecture; dropout is no shape, so its 0.5 is the card's word (the tutorial's value).
    assert card["config"] == {"ntoken": ntoken, "ninp": ninp, "nhid": nhid, "nlayers": nlayers, "dropout": 0.5}
    assert (ntoken, ninp, nhid, nlayers) == (33278, 512, 256, 5)
    assert {str(t.dtype) for t in tensors.values()} == {f"torch.{card['weights_dtype']}"} == {"torch.float16"}
    # Every weight of the file, and only those, is in the loaded model: embedding, 5 LSTM layers, decoder.
    lstm = 4 * nhid * (ninp + nhid) + 8 * nhid + (nlayers - 1) * (4 * nhid * 2 * nhid + 8 * nhid)
    expected = ntoken * ninp + lstm + ntoken * nhid + ntoken
    assert sum(t.numel() for t in tensors.values()) == expected == 28_484_606
    assert sum(p.numel() for p in bundle.model.parameters()) == expected
    state = bundle.model.state_dict()
    assert set(state) == set(tensors)
    assert all(torch.equal(state[name], tensors[name].float()) for name in tensors)


def test_bundle_vocab_is_the_corpus_dictionary(bundle, real_corpus):
    assert bundle.dictionary == real_corpus.dictionary


def test_card_loss_on_first_5000_test_tokens(bundle, float_5000):
    assert float_5000 == pytest.approx(bundle.card["test_loss_fp32_first_5000"], abs=0.02)
    # Far off the unigram plateau (7.06 nats on train).
    assert float_5000 < 6.0


def test_card_records_training_and_int8(bundle, card, real_corpus, float_5000):
    # The int8 figure is the tutorial's variant's: measured again on the first 5,000 tokens, quantizing moves the
    # loss about as much as the card says it did on the whole split.
    int8_5000 = evaluate(quantize(bundle.model, PRESETS["tutorial"]), real_corpus.test, max_tokens=5000).loss
    recorded = card["test_loss_tutorial"] - card["test_loss_fp32"]
    assert abs(recorded) < 0.01 and abs((int8_5000 - float_5000) - recorded) < 0.01, (int8_5000, float_5000)
    assert card["test_loss_fp32"] < 5.6
    # The training record matches the recipe and the corpus: one history entry per epoch, each of as many batches
    # as the train split gives at the recipe's batch size and bptt.
    recipe = card["recipe"]
    assert recipe["name"] == "adamw" and card["recipe_departs_from_seed"]
    rows = len(real_corpus.train) // recipe["batch_size"]
    batches = math.ceil((rows - 1) / recipe["bptt"])
    assert [e["epoch"] for e in card["history"]] == list(range(1, recipe["epochs"] + 1))
    assert all(e["batches"] == batches and not e["partial"] for e in card["history"])
    assert card["steps"] == recipe["epochs"] * batches
    assert card["history"][-1]["valid_loss"] < card["history"][0]["valid_loss"]
