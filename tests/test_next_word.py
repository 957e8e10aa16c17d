
import pytest
import torch

from wlm.corpus import EOS
from wlm.errors import WlmError
from wlm.next_word import next_words_pair

from conftest import tiny_model


def _top(model, dictionary, prompt: str, k: int) -> list[str]:
    """The model's ``k`` likeliest next words after ``prompt``, from one plain forward pass."""
    ids = torch.tensor([dictionary.word2idx[w] for w in prompt.split()]).view(-1, 1)
    logits, _ = model(ids, model.init_hidden(1))
    return [dictionary.idx2word[i] for i in torch.topk(logits[-1, 0], k).indices.tolist()]


def test_next_words_are_the_models_most_likely_after_the_prompt(trained_tiny):
    model, corpus = trained_tiny
    pair = next_words_pair(model, model, corpus.dictionary, "the cat sat on the", k=4)
    for name in ("float", "quantized"):
        table = pair[pair["model"] == name]
        assert list(table["rank"]) == [1, 2, 3, 4]
        assert table["prob"].is_monotonic_decreasing
    table = pair[pair["model"] == "float"]
    ids = torch.tensor([corpus.dictionary.word2idx[w] for w in "the cat sat on the".split()]).view(-1, 1)
    logits, _ = model(ids, model.init_hidden(1))
    expected = torch.topk(torch.softmax(logits[-1, 0].double(), -1), 4)
    assert list(table["word"]) == [corpus.dictionary.idx2word[i] for i in expected.indices.tolist()]
    assert table["prob"].tolist() == pytest.approx(expected.values.tolist(), rel=1e-6)
    # The prompt matters: another context gives other odds.
    other = next_words_pair(model, model, corpus.dictionary, "a dog", k=4)
    assert not table["prob"].equals(other[other["model"] == "float"]["prob"])


def test_next_words_empty_prompt_starts_after_a_line_break(trained_tiny):
    model, corpus = trained_tiny
    empty = next_words_pair(model, model, corpus.dictionary, "", k=3)
    eos = next_words_pair(model, model, corpus.dictionary, EOS, k=3)
    assert len(empty) == 6 and empty.equals(eos)
    with pytest.raises(WlmError, match="at least 1"):
        next_words_pair(model, model, corpus.dictionary, "the", k=0)


def test_next_words_pair_identical_models_agree_and_a_different_one_does_not(trained_tiny):
    model, corpus = trained_tiny
    same = next_words_pair(model, model, corpus.dictionary, "the dog", k=5)
    wide = same.pivot(index="word", columns="model", values="prob")
    assert (wide["float"] == wide["quantized"]).all()
    assert len(wide) == 5
    other = tiny_model(len(corpus.dictionary), seed=3)
    mixed = next_words_pair(model, other, corpus.dictionary, "the dog", k=5)
    words = set(mixed["word"])
    assert set(_top(model, corpus.dictionary, "the dog", 5)) <= words
    assert set(_top(other, corpus.dictionary, "the dog", 5)) <= words
    # Rows are in the float model's order.
    order = mixed[mixed["model"] == "float"]["prob"]
    assert order.is_monotonic_decreasing


