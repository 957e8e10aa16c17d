"""The Generate tab: seeded, greedy at temperature 0, float and quantized side by side."""
import torch
from streamlit.testing.v1 import AppTest

from wlm.generate import first_difference, generate
from wlm.quantize import PRESETS, quantize

from apptest import assert_clean, run_app


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


def test_generation_pairs_float_and_quantized_and_marks_where_they_part(app_env):
    at = run_app()
    _generate(at, seed=5, temperature=1.0, words=200)
    result = at.session_state["gen_result"]
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    texts = [list(generate(m, dictionary, words=200, temperature=1.0, seed=5))
             for m in (model, quantize(model, PRESETS["tutorial"]))]
    assert result["quantized"] == texts[1]
    assert result["first_difference"] == first_difference(*texts)
