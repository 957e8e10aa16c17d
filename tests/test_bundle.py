"""The shipped model: integrity, vocabulary, and the card's own figures."""
import json

import pytest

from wlm.bundle import BUNDLED_MODEL, load_bundle, sha256_file
from wlm.evaluate import evaluate

pytestmark = pytest.mark.skipif(not (BUNDLED_MODEL / "card.json").is_file(), reason="no bundled model in assets/")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLED_MODEL)


def test_bundle_sha_matches_card(bundle):
    card = json.loads((BUNDLED_MODEL / "card.json").read_text())
    assert sha256_file(BUNDLED_MODEL / "model.safetensors") == card["weights_sha256"] == bundle.card["weights_sha256"]
    assert card["config"] == {"ntoken": 33278, "ninp": 512, "nhid": 256, "nlayers": 5, "dropout": 0.5}


def test_bundle_vocab_is_the_corpus_dictionary(bundle, real_corpus):
    assert bundle.dictionary == real_corpus.dictionary


def test_card_loss_on_first_5000_test_tokens(bundle, real_corpus):
    loss = evaluate(bundle.model, real_corpus.test, max_tokens=5000).loss
    assert loss == pytest.approx(bundle.card["test_loss_fp32_first_5000"], abs=0.02)
    # Far off the unigram plateau (7.06 nats on train).
    assert loss < 6.0


def test_card_records_training_and_int8(bundle):
    card = bundle.card
    assert card["test_loss_fp32"] < 5.6
    assert abs(card["test_loss_tutorial"] - card["test_loss_fp32"]) < 0.01
    assert card["history"] and all("valid_loss" in e for e in card["history"])
    assert card["recipe"]["name"] == "adamw" and card["recipe_departs_from_seed"]
