import copy
import threading
import time

import numpy as np
import pytest
import torch

import wlm.generate as gen
from wlm.corpus import Dictionary
from wlm.errors import WlmError
from wlm.generate import (
    MAX_WORDS,
    Tickets,
    agreement,
    first_difference,
    generate,
    generate_side_by_side,
    pick,
    same_pick_probability,
    sample_ids,
)
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


def test_seeds_stay_aligned_across_temperature_zero_and_above(trained_tiny, monkeypatch):
    """Greedy still draws every step's tickets, so after the same number of words the generator is in
    the same state whatever the temperature."""
    model, corpus = trained_tiny
    made = []

    class Spied(Tickets):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(gen, "Tickets", Spied)
    states = []
    for temperature in (0.0, 0.7, 1.0):
        list(generate(model, corpus.dictionary, words=25, temperature=temperature, seed=4))
        states.append(made[-1].rng.bit_generator.state)
    assert states[0] == states[1] == states[2]
    fresh = Tickets(4, len(corpus.dictionary))
    assert fresh.rng.bit_generator.state != states[0]  # the runs did consume draws


def test_low_temperature_concentrates(trained_tiny):
    model, corpus = trained_tiny
    hot = list(generate(model, corpus.dictionary, words=200, temperature=5.0, seed=1))
    cold = list(generate(model, corpus.dictionary, words=200, temperature=0.3, seed=1))
    assert len(set(cold)) < len(set(hot))


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_tickets_draw_from_the_distribution(temperature):
    """Frequencies of many picks match softmax(logits / T): chi-square and total variation bounds
    that a biased pick (a missing temperature, a wrong sign on the noise) fails by far."""
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=np.float32)
    probs = np.exp(logits / temperature)
    probs /= probs.sum()
    tickets, scratch, n = Tickets(123, len(logits)), np.empty(len(logits), dtype=np.float32), 40_000
    counts = np.bincount([pick(logits, tickets.draw(), temperature, scratch) for _ in range(n)], minlength=6)
    expected = n * probs
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # the 99.9 % quantile with 5 degrees of freedom
    assert 0.5 * np.abs(counts / n - probs).sum() < 0.01


def test_identical_models_write_identical_texts(trained_tiny):
    model, corpus = trained_tiny
    twin = copy.deepcopy(model)
    for seed in range(4):
        for temperature in (0.0, 0.5, 1.0, 2.0):
            kwargs = dict(temperature=temperature, seed=seed)
            a, b = (list(generate(m, corpus.dictionary, words=30, **kwargs)) for m in (model, twin))
            assert a == b
            result = agreement(model, twin, corpus.dictionary, a, b, **kwargs)
            assert result.first_difference is None and result.agreed_words == 30
            assert len(result.same_pick) == 30 and result.same_pick == pytest.approx([1.0] * 30)


def test_prompt_with_unknown_words():
    dictionary = Dictionary(["<unk>", "a", "b", "<eos>"])
    ids, unknown = dictionary.encode_prompt("a zebra b quokka")
    assert unknown == ["zebra", "quokka"] and ids == [1, 0, 2, 0]
    model = tiny_model(4)
    a = list(generate(model, dictionary, words=5, prompt="a zebra b quokka"))
    assert a == list(generate(copy.deepcopy(model), dictionary, words=5, prompt="a zebra b quokka"))


def _perturbed_pair(vocab: int = 2000):
    """A model with a peaked distribution over a large vocabulary and a copy with every weight nudged by
    5 % of its layer's mean size: close distributions (same-pick odds ~95 %), as with quantization."""
    model = tiny_model(vocab, seed=0)
    with torch.no_grad():
        model.decoder.weight.mul_(100)
    other = copy.deepcopy(model)
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for weight in other.parameters():
            weight.add_(torch.randn(weight.shape, generator=noise) * 0.05 * weight.abs().mean())
    return model, other, Dictionary([f"w{i}" for i in range(vocab)])


def _inverse_cdf_ids(model, seed: int, words: int) -> list[int]:
    """The old sampler, kept as a reference: one uniform number per step through the cumulative
    distribution in id order."""
    generator, out = torch.Generator().manual_seed(seed), []
    hidden = model.init_hidden(1)
    x = torch.tensor([[int(torch.randint(model.config.ntoken, (1,), generator=generator))]])
    with torch.no_grad():
        for _ in range(words):
            logits, hidden = model(x, hidden)
            probs = torch.softmax(logits[-1, 0].double(), -1)
            u = torch.rand((), generator=generator)
            out.append(min(int(torch.searchsorted(torch.cumsum(probs, 0), u)), len(probs) - 1))
            x = torch.tensor([[out[-1]]])
    return out


def test_close_models_part_later_than_with_inverse_cdf_sampling():
    model, other, dictionary = _perturbed_pair()
    words, later, coupled = 60, 0, []
    for seed in range(20):
        a, b = (list(generate(m, dictionary, words=words, seed=seed)) for m in (model, other))
        ours = first_difference(a, b)
        old = first_difference(_inverse_cdf_ids(model, seed, words), _inverse_cdf_ids(other, seed, words))
        ours, old = (words if x is None else x for x in (ours, old))
        later += ours > old
        coupled.append(ours)
    assert later >= 15, f"coupled first differences {coupled}"
    assert np.median(coupled) >= 5


def test_agreement_gives_the_same_pick_odds_of_the_shared_prefix():
    model, other, dictionary = _perturbed_pair()
    kwargs = dict(words=60, temperature=1.0, seed=2)
    a, b = (list(generate(m, dictionary, **kwargs)) for m in (model, other))
    result = agreement(model, other, dictionary, a, b, temperature=1.0, seed=2)
    d = result.first_difference
    assert d is not None and a[:d] == b[:d] and a[d] != b[d] and result.agreed_words == d
    assert len(result.same_pick) == d + 1  # every shared step and the step where they part
    assert all(0.8 < p < 1.0 for p in result.same_pick)
    assert result.mean_same_pick == pytest.approx(np.mean(result.same_pick))
    # The first step by hand: both models read the seed's start word.
    start = torch.tensor([[Tickets(2, len(dictionary)).start_word()]])
    with torch.no_grad():
        p, q = (torch.softmax(m(start, m.init_hidden(1))[0][-1, 0].double(), -1) for m in (model, other))
    assert result.same_pick[0] == pytest.approx(float(torch.minimum(p, q).sum()), abs=1e-6)
    assert result.same_pick[0] == pytest.approx(1 - 0.5 * float((p - q).abs().sum()), abs=1e-6)


def test_same_pick_probability_values():
    a = np.array([3.0, 1.0, 0.0], dtype=np.float32)
    assert same_pick_probability(a, a, 1.0) == pytest.approx(1.0)
    assert same_pick_probability(a, a[::-1].copy(), 0.0) == 0.0
    assert same_pick_probability(a, a + 5, 0.0) == 1.0
    near_disjoint = np.array([-50.0, -50.0, 50.0], dtype=np.float32)
    assert same_pick_probability(a, near_disjoint, 1.0) == pytest.approx(np.exp(0) / np.exp(a).sum(), rel=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"words": 10, "temperature": -0.5}, "temperature"),
    ({"words": 10, "temperature": float("nan")}, "temperature"),
    ({"words": 0}, "words must be between"),
    ({"words": MAX_WORDS + 1}, "words must be between"),
])
def test_bad_sampling_parameters(kwargs, message):
    with pytest.raises(WlmError, match=message):
        next(sample_ids(tiny_model(5), 5, **kwargs))


def test_agreement_rejects_a_bad_temperature():
    dictionary = Dictionary(["<unk>", "a", "b"])
    with pytest.raises(WlmError, match="temperature"):
        agreement(tiny_model(3), tiny_model(3), dictionary, ["a"], ["b"], temperature=float("nan"))


def test_first_difference():
    assert first_difference(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference([], ["a"]) is None


def test_side_by_side_gives_each_model_its_own_text(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    for temperature in (0.0, 1.0):
        kwargs = dict(words=50, temperature=temperature, seed=3, prompt="the cat")
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


def test_a_writing_goes_on_in_the_background_and_any_reader_sees_the_same_words(trained_tiny):
    model, corpus = trained_tiny
    quantized = quantize(model, PRESETS["tutorial"])
    models = {"float": model, "quantized": quantized}
    job = gen.Writing(models, corpus.dictionary, words=30, temperature=1.0, seed=4, by="first")
    early = job.snapshot()  # a reader may look at any moment: lists of its own, prefixes of the texts
    assert job.wait(30) and job.finished and job.started and job.error is None
    whole = {name: list(gen.generate(m, corpus.dictionary, words=30, temperature=1.0, seed=4))
             for name, m in models.items()}
    assert job.snapshot() == whole
    assert all(early[name] == whole[name][:len(early[name])] for name in models)
    assert set(job.seconds) == {"float", "quantized"} and job.by == "first" and job.seconds_ago() >= 0


def test_writings_take_turns_and_bad_parameters_raise_before_any_thread(trained_tiny):
    model, corpus = trained_tiny
    turn, inside, most = threading.Lock(), [], []

    class OneAtATime:
        def __enter__(self):
            turn.acquire()
            inside.append(1)
            most.append(len(inside))

        def __exit__(self, *exc):
            inside.pop()
            turn.release()

    jobs = [gen.Writing({"float": model}, corpus.dictionary, words=20, seed=s, turn=OneAtATime) for s in range(3)]
    assert all(job.wait(30) for job in jobs) and max(most) == 1
    with pytest.raises(WlmError, match="words must be"):
        gen.Writing({"float": model}, corpus.dictionary, words=0)
    with pytest.raises(WlmError):
        gen.Writing({"float": model}, corpus.dictionary, words=5, temperature=-1)


def test_a_writing_keeps_the_error_its_thread_met(trained_tiny):
    model, corpus = trained_tiny

    class Broken(torch.nn.Module):
        def init_hidden(self, bsz):
            raise RuntimeError("no hidden state")

    job = gen.Writing({"float": model, "broken": Broken()}, corpus.dictionary, words=5)
    assert job.wait(30) and isinstance(job.error, RuntimeError)
