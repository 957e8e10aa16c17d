
import pytest
import torch

from wlm.corpus import EOS
from wlm.errors import WlmError
from wlm.next_word import next_words_pair, top_next_words

from conftest import tiny_model


def test_top_next_words_are_the_models_most_likely_after_the_prompt(trained_tiny):
    model, corpus = trained_tiny
    table = top_next_words(model, corpus.dictionary, "the cat sat on the", k=4)
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert table["prob"].is_monotonic_decreasing
    ids = torch.tensor([corpus.dictionary.word2idx[w] for w in "the cat sat on the".split()]).view(-1, 1)
    logits, _ = model(ids, model.init_hidden(1))
    expected = torch.topk(torch.softmax(logits[-1, 0].double(), -1), 4)
    assert list(table["word"]) == [corpus.dictionary.idx2word[i] for i in expected.indices.tolist()]
    assert table["prob"].tolist() == pytest.approx(expected.values.tolist(), rel=1e-6)
    # The prompt matters: another context gives other odds.
    assert not table["prob"].equals(top_next_words(model, corpus.dictionary, "a dog", k=4)["prob"])


def test_top_next_words_empty_prompt_starts_after_a_line_break(trained_tiny):
    model, corpus = trained_tiny
    empty = top_next_words(model, corpus.dictionary, "", k=3)
    eos = top_next_words(model, corpus.dictionary, EOS, k=3)
    assert empty.equals(eos)
    with pytest.raises(WlmError, match="at least 1"):
        top_next_words(model, corpus.dictionary, "the", k=0)


def test_next_words_pair_identical_models_agree_and_a_different_one_does_not(trained_tiny):
    model, corpus = trained_tiny
    same = next_words_pair(model, model, corpus.dictionary, "the dog", k=5)
    wide = same.pivot(index="word", columns="model", values="prob")
    assert (wide["float"] == wide["quantized"]).all()
    assert len(wide) == 5
    other = tiny_model(len(corpus.dictionary), seed=3)
    mixed = next_words_pair(model, other, corpus.dictionary, "the dog", k=5)
    words = set(mixed["word"])
    assert set(top_next_words(model, corpus.dictionary, "the dog", 5)["word"]) <= words
    assert set(top_next_words(other, corpus.dictionary, "the dog", 5)["word"]) <= words
    # Rows are in the float model's order.
    order = mixed[mixed["model"] == "float"]["prob"]
    assert order.is_monotonic_decreasing


