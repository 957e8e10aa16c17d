"""Long texts and prompts: models read them a chunk at a time (the numbers stay the one-shot ones, the memory
stays one chunk's), and a shared server reads only the first words of what a visitor sends, saying so."""
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from ui.generate_tab import MAX_APP_WORDS
from wlm import hosting
from wlm.corpus import EOS, UNK, Dictionary
from wlm.generate import READ_CHUNK, agreement, generate
from wlm.next_word import next_words_pair
from wlm.quantize import PRESETS, quantize
from wlm.surprisal import text_to_words, word_surprisal

from apptest import assert_clean, open_tab, run_app, takeaways
from conftest import REPO, tiny_model

GENERATE_TAB, FIDELITY_TAB = 1, 3
LINES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the dog ran on the log"]


def _long_text(words: int) -> str:
    """At least ``words`` words of the tiny corpus's lines, a line break (``<eos>``) between lines."""
    lines, count = [], 0
    while count < words:
        lines.append(LINES[len(lines) % len(LINES)])
        count += len(lines[-1].split()) + (len(lines) > 1)
    return "\n".join(lines)


def _one_shot_logits(model: nn.Module, ids: list[int]) -> torch.Tensor:
    """The whole sequence through the model in one call, as the code did before it read in chunks."""
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids, dtype=torch.long).view(-1, 1), model.init_hidden(1))
    return logits[:, 0].double()


class Spy(nn.Module):
    """A model that notes how many ids each call feeds it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.fed = model, []

    def forward(self, input, hidden):
        self.fed.append(len(input))
        return self.model(input, hidden)

    def init_hidden(self, bsz: int):
        return self.model.init_hidden(bsz)


# --- chunked reading gives the one-shot numbers -------------------------------------------------------------

def _one_shot_losses(model: nn.Module, dictionary: Dictionary, words: list[str]) -> list[float]:
    """-log p(word | the words before it) from one pass over the whole text, as ``word_surprisal`` once did."""
    word2idx = dictionary.word2idx
    targets = [word2idx.get(w, word2idx.get(UNK)) for w in words]
    inputs = [word2idx[EOS]] + [word2idx[EOS] if t is None else t for t in targets[:-1]]
    logp = torch.log_softmax(_one_shot_logits(model, inputs), dim=-1)
    return [float("nan") if t is None else -float(logp[i, t]) for i, t in enumerate(targets)]


def test_surprisal_of_a_text_of_many_chunks_is_the_one_shot_log_softmax(trained_tiny):
    model, corpus = trained_tiny
    text = _long_text(5 * READ_CHUNK + 17)
    words = text_to_words(text)
    assert len(words) > 5 * READ_CHUNK and EOS in words
    spy = Spy(model)
    table = word_surprisal(spy, corpus.dictionary, text)
    # Float32 logsumexp per chunk against float64 log_softmax of the whole: about 1e-6 nats apart.
    assert table["loss"].tolist() == pytest.approx(_one_shot_losses(model, corpus.dictionary, words), abs=1e-5)
    assert list(table["word"]) == words
    assert max(spy.fed) == READ_CHUNK and sum(spy.fed) == len(words)


@pytest.mark.parametrize("vocabulary", [[EOS, UNK, "the", "cat"], [EOS, "the", "cat"]], ids=["unk", "no unk"])
def test_an_unknown_word_in_a_long_text_is_scored_as_before(vocabulary):
    dictionary = Dictionary(vocabulary)
    model = tiny_model(len(dictionary))
    words = ["the", "cat"] * 2 * READ_CHUNK
    words[READ_CHUNK - 1] = "zebra"  # a chunk's last word: what stands in for it is the next chunk's first input
    table = word_surprisal(model, dictionary, " ".join(words))
    expected = _one_shot_losses(model, dictionary, words)
    assert table["loss"].tolist() == pytest.approx(expected, abs=1e-5, nan_ok=True)
    assert table["loss"].isna().sum() == (UNK not in vocabulary) and table["unknown"].sum() == 1


def test_next_word_after_a_prompt_of_many_chunks_is_the_one_shot_softmax(trained_tiny):
    model, corpus = trained_tiny
    prompt = _long_text(4 * READ_CHUNK + 5).replace("\n", " the ") + " the cat sat on the"
    ids = [corpus.dictionary.word2idx[w] for w in prompt.split()]
    assert len(ids) > 4 * READ_CHUNK
    spy = Spy(model)
    pair = next_words_pair(spy, model, corpus.dictionary, prompt, k=5)
    expected = torch.topk(torch.softmax(_one_shot_logits(model, ids)[-1], dim=-1), 5)
    for name in ("float", "quantized"):  # the spied model, then the same model unwatched
        table = pair[pair["model"] == name]
        assert list(table["word"]) == [corpus.dictionary.idx2word[i] for i in expected.indices.tolist()]
        assert table["prob"].tolist() == pytest.approx(expected.values.tolist(), rel=1e-5)
    assert max(spy.fed) == READ_CHUNK and sum(spy.fed) == len(ids)


def test_generate_after_a_prompt_of_many_chunks_continues_the_one_shot_reading(trained_tiny):
    model, corpus = trained_tiny
    prompt = _long_text(3 * READ_CHUNK + 9).replace("\n", f" {EOS} ") + " a dog"
    ids = [corpus.dictionary.word2idx[w] for w in prompt.split()]
    spy = Spy(model)
    words = list(generate(spy, corpus.dictionary, words=12, temperature=0, prompt=prompt))
    expected, logits, hidden = [], None, None
    with torch.no_grad():
        logits, hidden = model(torch.tensor(ids).view(-1, 1), model.init_hidden(1))
        for _ in range(12):
            expected.append(int(logits[-1, 0].argmax()))
            logits, hidden = model(torch.tensor([[expected[-1]]]), hidden)
    assert words == [corpus.dictionary.idx2word[i] for i in expected]
    assert max(spy.fed) == READ_CHUNK and sum(spy.fed) == len(ids) + 11  # the prompt, then a word a step


def test_agreement_after_a_long_prompt_starts_from_the_one_shot_distributions(trained_tiny):
    model, corpus = trained_tiny
    other = tiny_model(len(corpus.dictionary), seed=3)
    prompt = _long_text(2 * READ_CHUNK + 3).replace("\n", " the ")
    ids = [corpus.dictionary.word2idx[w] for w in prompt.split()]
    a, b = (list(generate(m, corpus.dictionary, words=5, seed=1, prompt=prompt)) for m in (model, other))
    result = agreement(model, other, corpus.dictionary, a, b, seed=1, prompt=prompt)
    p, q = (torch.softmax(_one_shot_logits(m, ids)[-1], dim=-1) for m in (model, other))
    assert result.same_pick[0] == pytest.approx(float(torch.minimum(p, q).sum()), abs=1e-6)


# --- memory follows one chunk, not the text -----------------------------------------------------------------

# A model of the bundled vocabulary (33,278 words) with a small LSTM: the logits, [positions x vocabulary], are
# what grew with the text (20,000 words: 2.7 GB of float32 logits, about 13 GB with the float64 copies).
CHILD = """
import sys
import torch
from wlm.corpus import EOS, UNK, Dictionary
from wlm.generate import generate
from wlm.model import LSTMModel, ModelConfig
from wlm.next_word import next_words_pair
from wlm.quantize import PRESETS, quantize
from wlm.surprisal import surprisal_pair

task, words, vocab = sys.argv[1], int(sys.argv[2]), 33_278
torch.set_num_threads(1)  # as the app runs
torch.manual_seed(0)
model = LSTMModel(ModelConfig(ntoken=vocab, ninp=32, nhid=32, nlayers=1, dropout=0.0)).eval()
quant = quantize(model, PRESETS["tutorial"])
dictionary = Dictionary([EOS, UNK] + [f"w{i}" for i in range(vocab - 2)])
text = " ".join(f"w{i * 7919 % (vocab - 2)}" for i in range(words))
if task == "surprisal":
    assert len(surprisal_pair(model, quant, dictionary, text)) == words
elif task == "next word":
    assert len(next_words_pair(model, quant, dictionary, text, 10)) >= 20
else:
    assert len(list(generate(quant, dictionary, words=3, prompt=text))) == 3
# VmHWM: the peak of this process image, in kB. ru_maxrss would keep the parent's peak across exec (a test run's
# pytest holds a gigabyte), so both sizes would read the same and the comparison could not fail.
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024)
"""
MB = 1 << 20


def _peak_bytes(task: str, words: int) -> int:
    """Peak resident memory of a fresh process that reads ``words`` words for ``task``."""
    done = subprocess.run([sys.executable, "-c", CHILD, task, str(words)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)  # a watchdog: a run that swaps ends here
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak from /proc/self/status")
@pytest.mark.parametrize("task", ["surprisal", "next word", "generate"])
def test_reading_20000_words_costs_no_more_memory_than_200(task):
    short, long = _peak_bytes(task, 200), _peak_bytes(task, 20_000)
    assert long < 1500 * MB, f"{task}: peak {long / MB:.0f} MB for 20,000 words"
    assert long - short < 300 * MB, f"{task}: {short / MB:.0f} MB for 200 words, {long / MB:.0f} MB for 20,000"


# --- a shared server reads the first words of a text --------------------------------------------------------

@pytest.fixture
def laptop(app_env, monkeypatch):
    monkeypatch.delenv("WLM_HOSTED", raising=False)
    return app_env


def _scored_words(at) -> list[str]:
    """The words the surprise box scored, shaded one by one: a block a word, the word on top."""
    rows = [m.value for m in at.tabs[FIDELITY_TAB].markdown if "<i>float</i>" in m.value]
    assert len(rows) == 1
    return re.findall(r"<span title='[^']*' style='[^']*'><span style='[^']*'>([^<]*)</span>", rows[0])


def _notes(at, tab: int) -> list[str]:
    return [i.value for i in at.tabs[tab].info if i.value.startswith("This shared server reads at most")]


@torch.no_grad()
def _next_word_probs(model: nn.Module, dictionary: Dictionary, prompt: str) -> torch.Tensor:
    """The next-word distribution after ``prompt``, the model reading it ``READ_CHUNK`` words at a time."""
    ids, hidden = torch.tensor([dictionary.word2idx[w] for w in prompt.split()]), model.init_hidden(1)
    for i in range(0, len(ids), READ_CHUNK):
        logits, hidden = model(ids[i:i + READ_CHUNK].view(-1, 1), hidden)
    return torch.softmax(logits[-1, 0].double(), -1)


def _next_word_takeaway(model: nn.Module, quant: nn.Module, dictionary: Dictionary, prompt: str, k: int = 8) -> str:
    """What the next-word chart's takeaway says about these two models after ``prompt``, worked out here: both
    models' first words and probabilities, and the largest move among the words shown (each model's top ``k``)."""
    pf, pq = _next_word_probs(model, dictionary, prompt), _next_word_probs(quant, dictionary, prompt)
    shown = set(torch.topk(pf, k).indices.tolist()) | set(torch.topk(pq, k).indices.tolist())
    first_f, first_q = int(pf.argmax()), int(pq.argmax())
    word_f, word_q = dictionary.idx2word[first_f], dictionary.idx2word[first_q]

    def prob(p) -> str:
        return f"{float(p):.1%}" if p >= 0.001 else f"{float(p):.1e}"

    if first_f == first_q:
        gap = max(abs(float(pf[i] - pq[i])) for i in shown)
        return (f"Both models put {word_f!r} first ({prob(pf[first_f])} float, {prob(pq[first_f])} quantized); "
                f"no shown word moves by more than {prob(gap)}.")
    return (f"The models disagree: float picks {word_f!r} ({prob(pf[first_f])}), quantized picks {word_q!r} "
            f"({prob(pq[first_q])}).")


def _long_prompt(head_words: int) -> tuple[str, str]:
    """A prompt of thousands of words, and its first ``head_words``: they end on another word than the whole."""
    head = ("the cat sat on the mat " * head_words).split()[:head_words]
    tail = ("a dog ran on the log " * 1000).split()
    assert head[-1] != tail[-1]
    return " ".join(head + tail), " ".join(head)


def test_a_shared_server_scores_only_the_first_words_of_a_long_text(hosted, monkeypatch):
    monkeypatch.setattr(hosting, "MAX_TEXT_WORDS", 50)
    text = " ".join(f"{w}" for _ in range(500) for w in "the cat sat on the mat and the dog ran".split())
    at = run_app({"tab": "fidelity"})
    at.text_area(key="sur_text").set_value(text).run()
    assert_clean(at)
    assert _scored_words(at) == text.split()[:50]
    assert _notes(at, FIDELITY_TAB) == [f"This shared server reads at most 50 words ({hosting.MAX_TEXT_CHARS:,} "
                                        f"characters) of a text; only the first 50 words of yours (5,000 words) "
                                        f"were used."]


def test_a_shared_server_cuts_a_long_text_at_the_character_bound_between_words(hosted, monkeypatch):
    monkeypatch.setattr(hosting, "MAX_TEXT_CHARS", 60)
    text = "the cat sat on the mat\nand the dog ran on the log " * 300
    at = run_app({"tab": "fidelity"})
    at.text_area(key="sur_text").set_value(text).run()
    assert_clean(at)
    kept = text[:60].rsplit(" ", 1)[0]  # 60 characters end inside a word, which is left out
    assert kept.endswith("log the cat")
    assert _scored_words(at) == ["⏎" if w == EOS else w for w in text_to_words(kept)]
    notes = _notes(at, FIDELITY_TAB)
    assert len(notes) == 1 and f"only the first 15 words of yours ({len(text):,} characters)" in notes[0]


def test_a_shared_server_continues_only_the_first_words_of_a_long_prompt(hosted, monkeypatch):
    monkeypatch.setattr(hosting, "MAX_PROMPT_WORDS", 20)
    prompt, head = _long_prompt(20)
    model, dictionary = hosted["model"], hosted["corpus"].dictionary
    expected = list(generate(model, dictionary, words=10, temperature=0, prompt=head))
    assert expected != list(generate(model, dictionary, words=10, temperature=0, prompt=prompt))
    at = run_app({"tab": "generate"})
    at.slider(key="gen_temperature").set_value(0.0)
    at.number_input(key="gen_words").set_value(10)
    at.text_input(key="gen_prompt").set_value(prompt)
    at.button(key="gen_go").click().run()
    assert_clean(at)
    result = at.session_state["gen_result"]
    assert result["float"] == expected and result["request"][-1] == head
    notes = _notes(at, GENERATE_TAB)
    assert len(notes) == 1 and "only the first 20 words of yours" in notes[0]


def test_a_shared_server_predicts_the_next_word_after_the_first_words_of_a_long_prompt(hosted, monkeypatch):
    monkeypatch.setattr(hosting, "MAX_PROMPT_WORDS", 20)
    prompt, head = _long_prompt(20)
    model, dictionary = hosted["model"], hosted["corpus"].dictionary
    quant = quantize(model, PRESETS["tutorial"])
    expected, whole = (_next_word_takeaway(model, quant, dictionary, p) for p in (head, prompt))
    assert expected != whole
    at = run_app({"tab": "fidelity"})
    at.text_input(key="fid_prompt").set_value(prompt).run()
    assert_clean(at)
    shown = takeaways(at)
    assert f"**Takeaway:** {expected}" in shown and f"**Takeaway:** {whole}" not in shown
    notes = _notes(at, FIDELITY_TAB)
    assert len(notes) == 1 and "only the first 20 words of yours" in notes[0]


def test_no_request_generates_more_words_than_the_app_offers(hosted):
    at = run_app({"tab": "generate"})
    at.number_input(key="gen_words").set_value(MAX_APP_WORDS + 500)  # what a script may send
    at.button(key="gen_go").click().run()
    assert_clean(at)
    assert 1 <= len(at.session_state["gen_result"]["float"]) <= MAX_APP_WORDS


def test_a_laptop_reads_a_long_text_and_prompts_whole(laptop):
    model, dictionary = laptop["model"], laptop["corpus"].dictionary
    text = " ".join(f"{w}" for _ in range(500) for w in "the cat sat on the mat and the dog ran".split())
    prompt, _ = _long_prompt(20)
    at = run_app({"tab": "fidelity"})
    at.text_area(key="sur_text").set_value(text)
    at.text_input(key="fid_prompt").set_value(prompt).run()
    assert_clean(at)
    assert f"{len(text.split()):,} words are too many to shade one by one" in " ".join(  # all of them, summed up
        c.value for c in at.tabs[FIDELITY_TAB].caption)
    quant = quantize(model, PRESETS["tutorial"])
    whole = _next_word_takeaway(model, quant, dictionary, prompt)
    assert f"**Takeaway:** {whole}" in takeaways(at)
    assert not _notes(at, FIDELITY_TAB)
    open_tab(at, "Generate")
    at.slider(key="gen_temperature").set_value(0.0)
    at.number_input(key="gen_words").set_value(10)
    at.text_input(key="gen_prompt").set_value(prompt)
    at.button(key="gen_go").click().run()
    assert_clean(at)
    result = at.session_state["gen_result"]
    assert result["request"][-1] == prompt
    assert result["float"] == list(generate(model, dictionary, words=10, temperature=0, prompt=prompt))
    assert not _notes(at, GENERATE_TAB)
