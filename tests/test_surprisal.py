import math

import pytest
import torch

from wlm.corpus import EOS, UNK, Dictionary
from wlm.errors import WlmError
from wlm.evaluate import evaluate
from wlm.quantize import PRESETS, quantize
from wlm.surprisal import surprisal_pair, text_to_words, word_surprisal

from conftest import tiny_model


def test_text_to_words_turns_line_breaks_into_eos():
    assert text_to_words("a b\n c \n\nd") == ["a", "b", EOS, "c", EOS, EOS, "d"]
    assert text_to_words("  \n ") == []


def test_word_surprisal_mean_is_the_evaluation_loss(trained_tiny):
    model, corpus = trained_tiny
    text = "the cat sat on the mat\nthe dog ran on the log"
    table = word_surprisal(model, corpus.dictionary, text)
    words = text_to_words(text)
    assert list(table["word"]) == words and not table["unknown"].any()
    ids = torch.tensor([corpus.dictionary.word2idx[w] for w in [EOS] + words])
    # The same tokens through the tutorial's evaluation (chunks of 25, hidden carried) give the same mean loss.
    assert table["loss"].mean() == pytest.approx(evaluate(model, ids, bptt=5).loss, rel=1e-5)
    assert (table["loss"] > 0).all()


def test_word_surprisal_flags_unknown_words():
    dictionary = Dictionary([EOS, UNK, "the", "cat"])
    model = tiny_model(len(dictionary))
    table = word_surprisal(model, dictionary, "the zebra cat")
    assert list(table["unknown"]) == [False, True, False]
    assert table["loss"].notna().all()  # scored as <unk>
    no_unk = Dictionary([EOS, "the", "cat"])
    table = word_surprisal(tiny_model(len(no_unk)), no_unk, "the zebra cat")
    assert list(table["unknown"]) == [False, True, False]
    assert math.isnan(table["loss"][1]) and not math.isnan(table["loss"][2])
    with pytest.raises(WlmError, match="at least one word"):
        word_surprisal(model, dictionary, "   ")


def test_surprisal_pair_of_a_model_with_itself_has_zero_delta(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    same = surprisal_pair(model, model, corpus.dictionary, "the cat ran")
    assert (same["delta"] == 0).all()
    pair = surprisal_pair(model, quant, corpus.dictionary, "the cat ran")
    assert pair["loss_quant"].tolist() == word_surprisal(quant, corpus.dictionary, "the cat ran")["loss"].tolist()
    assert (pair["delta"] != 0).any()


