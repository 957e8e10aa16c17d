"""The Generate tab: seeded, greedy at temperature 0, float and quantized side by side, and how likely a
shared pick was."""
import re

import pytest
import torch
from streamlit.testing.v1 import AppTest

from wlm.generate import agreement, first_difference, generate
from wlm.quantize import PRESETS, quantize

from apptest import assert_clean, run_app

GENERATE_TAB = 1


def _generate(at: AppTest, *, seed: int, temperature: float, words: int = 40, prompt: str = "") -> list[str]:
    at.sidebar.number_input(key="seed").set_value(seed)
    at.slider(key="gen_temperature").set_value(temperature)
    at.number_input(key="gen_words").set_value(words)
    at.text_input(key="gen_prompt").set_value(prompt)
    at.button(key="gen_go").click().run()
    assert_clean(at)
    return at.session_state["gen_result"]["float"]


def test_same_seed_gives_the_same_text_and_temperature_zero_is_greedy(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app()
    first = _generate(at, seed=3, temperature=1.0)
    again = _generate(at, seed=3, temperature=1.0)
    other = _generate(at, seed=4, temperature=1.0)
    assert first == again and first != other
    assert first == list(generate(model, dictionary, words=40, temperature=1.0, seed=3))
    # What is shown is that text, with <eos> as a line break.
    shown = " ".join(m.value for m in at.markdown if "line-height" in m.value)
    assert all(w in shown for w in other if w != "<eos>")
    greedy = _generate(at, seed=1, temperature=0.0, prompt="the dog")
    assert greedy == _generate(at, seed=99, temperature=0.0, prompt="the dog")
    ids = [dictionary.word2idx[w] for w in "the dog".split()]
    expected, hidden, x = [], model.init_hidden(1), torch.tensor(ids).view(-1, 1)
    with torch.no_grad():
        for _ in range(40):
            logits, hidden = model(x, hidden)
            expected.append(int(logits[-1, 0].argmax()))
            x = torch.tensor([[expected[-1]]])
    assert greedy == [dictionary.idx2word[i] for i in expected]


def _shown(at: AppTest) -> tuple[list[str], str, int]:
    """The two texts' HTML, the tab's takeaway, and how many charts the tab draws."""
    tab = at.tabs[GENERATE_TAB]
    texts = [m.value for m in tab.markdown if "line-height" in m.value]
    takeaway = [c.value for c in tab.caption if c.value.startswith("**Takeaway:**")]
    assert len(texts) == 2 and len(takeaway) == 1, (texts, takeaway)
    return texts, takeaway[0], len(tab.get("vega_lite_chart"))


def _marked_word(html: str) -> int | None:
    """The position of the highlighted word: the words (and line breaks, one per <eos>) before it."""
    if "<mark" not in html:
        return None
    before = html[html.index(">") + 1:html.index("<mark")].replace("<br>", " <br> ")
    return len(before.split())


def test_generation_pairs_float_and_quantized_and_marks_where_they_part(app_env):
    at = run_app()
    _generate(at, seed=0, temperature=1.0, words=200)
    result = at.session_state["gen_result"]
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    quant = quantize(model, PRESETS["tutorial"])
    texts = [list(generate(m, dictionary, words=200, temperature=1.0, seed=0)) for m in (model, quant)]
    assert result["float"] == texts[0] and result["quantized"] == texts[1]
    first = first_difference(*texts)
    assert first is not None and texts[0][first] != "<eos>"  # this seed parts on a word the page can highlight
    html, takeaway, n_charts = _shown(at)
    assert [_marked_word(h) for h in html] == [first, first]
    assert n_charts == 1
    # The takeaway gives what ``agreement`` measures, and the speed note stays with it.
    expected = agreement(model, quant, dictionary, *texts, temperature=1.0, seed=0)
    agreed = re.search(r"The texts agree for ([\d,]+) words and part at word ([\d,]+);", takeaway)
    assert agreed and (int(agreed[1]), int(agreed[2])) == (expected.agreed_words, first + 1)
    assert f"the same word {100 * expected.mean_same_pick:.1f} % of the time" in takeaway
    odds = expected.mean_same_pick
    due = f" (a difference is due about once in {1 / (1 - odds):,.0f} words)" if 0.5 <= odds < 0.9995 else ""
    assert (f"The texts agree for {first:,} words and part at word {first + 1:,}; at each step until then the two "
            f"models would pick the same word {100 * odds:.1f} % of the time{due}.") in takeaway
    assert re.search(r"float took [\d.]+ s \([\d,]+ words/s\)", takeaway)  # and the speed note stays with it
    assert "same tickets" in " ".join(c.value for c in at.tabs[GENERATE_TAB].caption)


@pytest.mark.parametrize("preset", ["fp32", "float16"])
def test_models_that_barely_differ_never_part(app_env, preset):
    at = run_app()
    at.sidebar.selectbox(key="preset").set_value(preset).run()
    for temperature in (1.0, 0.0):
        words = _generate(at, seed=2, temperature=temperature, words=60)
        result = at.session_state["gen_result"]
        assert result["quantized"] == words and result["first_difference"] is None
        html, takeaway, n_charts = _shown(at)
        assert [_marked_word(h) for h in html] == [None, None] and n_charts == 1
        if temperature:
            assert "The texts agree on all 60 words; at each step the two models would pick the same word" in takeaway
            if preset == "fp32":
                assert "100.0 % of the time" in takeaway
        else:
            assert "At temperature 0 each model writes its most likely word, and the two agree on it at all 60 steps" \
                in takeaway
