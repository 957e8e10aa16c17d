import pytest
import torch

from wlm.corpus import Dictionary
from wlm.errors import WlmError
from wlm.generate import (MAX_WORDS, as_text, first_difference, generate, generate_pair, generate_side_by_side,
                          sample_ids)
from wlm.quantize import PRESETS, quantize

from conftest import tiny_model


def test_same_seed_same_text_and_plain_strings(trained_tiny):
    model, corpus = trained_tiny
    a = list(generate(model, corpus.dictionary, words=40, temperature=1.0, seed=7))
    b = list(generate(model, corpus.dictionary, words=40, temperature=1.0, seed=7))
    c = list(generate(model, corpus.dictionary, words=40, temperature=1.0, seed=8))
    assert a == b and a != c and len(a) == 40
    assert all(type(w) is str and not w.startswith("b'") for w in a)


def test_temperature_zero_is_greedy(trained_tiny):
    model, corpus = trained_tiny
    words = list(generate(model, corpus.dictionary, words=15, temperature=0, prompt="the cat"))
    ids = [corpus.dictionary.word2idx[w] for w in ["the", "cat"]]
    hidden = model.init_hidden(1)
    expected = []
    with torch.no_grad():
        logits, hidden = model(torch.tensor(ids).view(-1, 1), hidden)
        for _ in range(15):
            nxt = int(logits[-1, 0].argmax())
            expected.append(corpus.dictionary.idx2word[nxt])
            logits, hidden = model(torch.tensor([[nxt]]), hidden)
    assert words == expected
    # Greedy does not depend on the seed.
    assert words == list(generate(model, corpus.dictionary, words=15, temperature=0, seed=99, prompt="the cat"))


def test_low_temperature_concentrates(trained_tiny):
    model, corpus = trained_tiny
    hot = list(generate(model, corpus.dictionary, words=200, temperature=5.0, seed=1))
    cold = list(generate(model, corpus.dictionary, words=200, temperature=0.3, seed=1))
    assert len(set(cold)) < len(set(hot))


def test_prompt_with_unknown_words():
    dictionary = Dictionary(["<unk>", "a", "b", "<eos>"])
    model = tiny_model(4)
    pair = generate_pair(model, model, dictionary, words=5, prompt="a zebra b quokka")
    assert pair.unknown == ["zebra", "quokka"]
    assert pair.float_words == pair.quant_words and pair.first_difference is None


def test_paired_run_finds_first_difference(trained_tiny):
    model, corpus = trained_tiny
    other = tiny_model(len(corpus.dictionary), seed=5)
    pair = generate_pair(model, other, corpus.dictionary, words=50, seed=3)
    assert pair.first_difference is not None
    i = pair.first_difference
    assert pair.float_words[:i] == pair.quant_words[:i] and pair.float_words[i] != pair.quant_words[i]
    q = generate_pair(model, quantize(model, PRESETS["tutorial"]), corpus.dictionary, words=50, seed=3)
    assert q.first_difference is None or q.first_difference > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"words": 10, "temperature": -0.5}, "temperature"),
    ({"words": 10, "temperature": float("nan")}, "temperature"),
    ({"words": 0}, "words must be between"),
    ({"words": MAX_WORDS + 1}, "words must be between"),
])
def test_bad_sampling_parameters(kwargs, message):
    with pytest.raises(WlmError, match=message):
        next(sample_ids(tiny_model(5), 5, **kwargs))


def test_as_text_breaks_lines_on_eos():
    assert as_text(["a", "<eos>", "b", "c", "<eos>"]) == "a\nb c\n"


def test_first_difference():
    assert first_difference(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference([], ["a"]) is None


def test_side_by_side_gives_each_model_its_own_text(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    kwargs = dict(words=50, temperature=1.0, seed=3, prompt="the cat")
    steps = list(generate_side_by_side({"float": model, "quantized": quant}, corpus.dictionary, **kwargs))
    for name, m in (("float", model), ("quantized", quant)):
        mine = [s for s in steps if s.model == name]
        assert [s.word for s in mine[:-1]] == list(generate(m, corpus.dictionary, **kwargs))
        assert mine[-1].word is None and mine[-1].seconds >= max(s.seconds for s in mine[:-1])
    assert len(steps) == 2 * 51


def test_side_by_side_checks_parameters_first_and_stops_when_closed(trained_tiny):
    model, corpus = trained_tiny
    with pytest.raises(WlmError, match="temperature"):
        generate_side_by_side({"float": model}, corpus.dictionary, words=5, temperature=-1)
    with pytest.raises(WlmError, match="words"):
        generate_side_by_side({"float": model}, corpus.dictionary, words=0)
    steps = generate_side_by_side({"a": model, "b": model}, corpus.dictionary, words=MAX_WORDS)
    first = next(steps)
    assert first.word is not None
    steps.close()  # a reader that leaves early (a rerun) stops the threads
    import threading
    import time
    deadline = time.monotonic() + 10
    while any(t.name.startswith("generate-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("generate-") for t in threading.enumerate())


def test_side_by_side_raises_what_a_thread_raised(trained_tiny):
    model, corpus = trained_tiny

    class Broken(torch.nn.Module):
        def init_hidden(self, bsz):
            return model.init_hidden(bsz)

        def forward(self, input, hidden):
            raise RuntimeError("this model is broken")

    with pytest.raises(RuntimeError, match="broken"):
        list(generate_side_by_side({"float": model, "broken": Broken()}, corpus.dictionary, words=20))
