"""The Generate tab: seeded, greedy at temperature 0, float and quantized side by side, and how likely a
shared pick was."""
import json
import re
import time

import pytest
import torch
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx
from streamlit.testing.v1 import AppTest

import ui.generate_tab as generate_tab
from ui import backend
from ui.charts import word_html
from wlm.generate import agreement, first_difference, generate
from wlm.quantize import PRESETS, quantize

from apptest import assert_clean, html_words, open_tab, run_app

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
    at = run_app({"tab": "generate"})
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
    at = run_app({"tab": "generate"})
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
    # A legend names both marks, drawn in the texts' own styles, and where the texts part.
    (legend,) = [m.value for m in at.tabs[GENERATE_TAB].markdown if "<mark" in m.value and "line-height" not in m.value]
    parted = f"<mark style='{word_html.PARTED}'>word</mark> the first word where the two texts part (word {first + 1})"
    assert parted in legend and f"<span style='{word_html.DIFFERS}'>word</span> a later word that differs" in legend
    assert all(f"style='{style}'" in h for style in (word_html.PARTED, word_html.DIFFERS) for h in html)
    # The same-pick chart's word axis runs from the first word to the last step it has a point for.
    (chart,) = at.tabs[GENERATE_TAB].get("vega_lite_chart")
    layers = json.loads(chart.proto.spec)["layer"]
    assert len(layers) == 3  # the parting word's rule, the line, the points: none of them adds a word 0
    assert [layer["encoding"]["x"]["scale"]["domain"] for layer in layers] == [[1, len(expected.same_pick)]] * 3


@pytest.mark.parametrize("preset", ["fp32", "float16"])
def test_models_that_barely_differ_never_part(app_env, preset):
    at = run_app({"tab": "generate"})
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


def _quiet(at: AppTest) -> list[str]:
    """The tab's notes (st.info) about texts that are not this setup's finished pair."""
    return [i.value for i in at.tabs[GENERATE_TAB].info]


@pytest.mark.parametrize("how", ["stop", "rerun"])
def test_a_rerun_while_writing_lets_the_writing_finish_and_says_so(app_env, monkeypatch, how):
    """A tab switch or a sidebar change reruns the page while both models write: Streamlit stops the script at
    its next box update. The writing goes on in the background, and the page's next run takes it up and shows
    it finished, saying what happened; the texts are written once.

    A served app (``runner.fastReruns``, on by default) stops the running script (StopException, and Streamlit
    raises again at each later access to the session state from it) and starts the new run beside it; without
    fast reruns the same script reruns (RerunException). Both are asked for here as a browser's message asks."""
    import wlm.generate as wlm_generate

    real_generate, real_wait, calls, asked = wlm_generate.generate, wlm_generate.Writing.wait, [], []

    def slow_generate(model, dictionary, **kwargs):
        calls.append(kwargs)
        for word in real_generate(model, dictionary, **kwargs):
            time.sleep(0.01)  # 40 words take about half a second: the page sees them come
            yield word

    def wait_then_rerun(self, seconds):
        if not asked:  # what a browser's rerun request does; Streamlit raises at the next box update
            asked.append(True)
            requests = get_script_run_ctx().script_requests
            requests.request_stop() if how == "stop" else requests.request_rerun(RerunData())
        return real_wait(self, seconds)

    monkeypatch.setattr(wlm_generate, "generate", slow_generate)
    monkeypatch.setattr(wlm_generate.Writing, "wait", wait_then_rerun)
    backend.writing.clear()  # texts an earlier test had written are the server's already
    at = run_app({"tab": "generate"})
    at.number_input(key="gen_words").set_value(40)
    at.button(key="gen_go").click().run()  # a rerun runs in this same call: the button is no longer pressed
    if how == "stop":
        at.run()  # the page's next run, which a served app starts as this one stops
    assert_clean(at)
    assert asked and len(calls) == 2  # one writing, float and quantized
    result = at.session_state["gen_result"]
    assert result["finished"] is True and result["resumed"] is True
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    whole = [list(real_generate(m, dictionary, words=40, temperature=1.0, seed=0))
             for m in (model, quantize(model, PRESETS["tutorial"]))]
    assert [result["float"], result["quantized"]] == whole
    for _ in range(2):  # and the next run of the tab still says so, with the pair's chart
        assert _quiet(at) == [generate_tab.RESUMED]
        texts = [m.value for m in at.tabs[GENERATE_TAB].markdown if "line-height" in m.value]
        assert [html_words(t) for t in texts] == whole
        assert len(at.tabs[GENERATE_TAB].get("vega_lite_chart")) == 1
        at.run()
        assert_clean(at)
    assert len(calls) == 2
    # Generate again for the same texts: the server's writing is taken, not written once more, and the note goes.
    at.button(key="gen_go").click().run()
    assert_clean(at)
    assert len(calls) == 2 and at.session_state["gen_result"]["float"] == whole[0] and not _quiet(at)


def test_a_writing_that_lost_its_turn_keeps_what_was_written_and_says_so(app_env, monkeypatch):
    """A writing that never gets to finish (here: its place in line taken by the same session's next request)
    leaves the words it had on the page, with why they stopped."""
    from wlm.hosting import Superseded

    at = run_app({"tab": "generate"})
    _generate(at, seed=0, temperature=1.0, words=30)
    result = at.session_state["gen_result"]
    full = list(result["float"])
    result.update(finished=False, float=full[:6], quantized=full[:4])
    result["writing"].error = Superseded("replaced")
    at.run()
    assert_clean(at)
    assert _quiet(at) == ["The writing stopped when float had written 6 of 30 words and quantized 4, because the page "
                          "reran (a tab switch or a change in the sidebar) before it finished; what was written until "
                          "then is kept below. Press Generate to write it again."]
    assert not at.tabs[GENERATE_TAB].get("vega_lite_chart")  # no chart of a pair never finished
    at.sidebar.selectbox(key="preset").set_value("float16").run()
    assert _quiet(at) == ["The writing stopped when float had written 6 of 30 words and quantized 4, because the page "
                          "reran (a tab switch or a change in the sidebar) before it finished; what was written until "
                          "then is kept below. They are from the earlier setup: since then the quantization (tutorial "
                          "→ float16) changed. Press Generate to write it again."]


def test_texts_another_session_asked_for_are_shared_and_can_be_written_again(app_env, monkeypatch):
    import wlm.generate as wlm_generate

    real_generate, calls = wlm_generate.generate, []

    def counted(model, dictionary, **kwargs):
        calls.append(kwargs)
        return real_generate(model, dictionary, **kwargs)

    monkeypatch.setattr(wlm_generate, "generate", counted)
    backend.writing.clear()
    first, second = run_app({"tab": "generate", "seed": "11"}), run_app({"tab": "generate", "seed": "11"})
    a = _generate(first, seed=11, temperature=1.0, words=25)
    assert len(calls) == 2 and not [c for c in first.tabs[GENERATE_TAB].caption if "another visitor" in c.value]
    b = _generate(second, seed=11, temperature=1.0, words=25)
    assert a == b and len(calls) == 2  # written once for both
    shared = [c.value for c in second.tabs[GENERATE_TAB].caption if "another visitor" in c.value]
    assert len(shared) == 1 and "Written" in shared[0] and "not written twice" in shared[0]
    second.button(key="gen_again_go").click().run()
    assert_clean(second)
    assert len(calls) == 4 and second.session_state["gen_result"]["float"] == a  # its own writing, same words
    assert not [c for c in second.tabs[GENERATE_TAB].caption if "another visitor" in c.value]


def test_a_setup_change_after_writing_says_the_texts_are_the_earlier_setups(app_env):
    at = run_app({"tab": "generate"})
    written = _generate(at, seed=0, temperature=1.0, words=30)
    quantized = at.session_state["gen_result"]["quantized"]
    at.sidebar.selectbox(key="preset").set_value("float16").run()
    assert_clean(at)
    assert _quiet(at) == ["These texts were written with an earlier setup: since then the quantization (tutorial → "
                          "float16) changed. Press Generate to write them with this one."]
    tab = at.tabs[GENERATE_TAB]
    assert "**quantized (tutorial)**" in [m.value for m in tab.markdown]  # the texts keep their own label
    texts = [m.value for m in tab.markdown if "line-height" in m.value]
    assert [html_words(t) for t in texts] == [written, quantized]
    assert not tab.get("vega_lite_chart") and not [c for c in tab.caption if c.value.startswith("**Takeaway:**")]
    at.sidebar.number_input(key="seed").set_value(5).run()
    assert _quiet(at) == ["These texts were written with an earlier setup: since then the quantization (tutorial → "
                          "float16) and the seed (0 → 5) changed. Press Generate to write them with this one."]
    # Back to the setup they were written with: they are that setup's texts again, with their chart.
    at.sidebar.number_input(key="seed").set_value(0)
    at.sidebar.selectbox(key="preset").set_value("tutorial").run()
    assert_clean(at)
    assert not _quiet(at) and len(at.tabs[GENERATE_TAB].get("vega_lite_chart")) == 1


def test_the_corpus_markers_in_the_texts_are_explained(app_env):
    at = run_app({"tab": "generate"})
    assert_clean(at)
    (box,) = [e for e in at.tabs[1].expander if e.label == "The corpus's own words in the texts"]
    explained = " ".join(m.value for m in box.markdown)
    for marker in ("`<unk>`", "`<eos>`", "`@-@`"):
        assert marker in explained
    assert "= = History = =" in explained  # Wikitext-2's headings, which generated text copies


def test_a_press_followed_at_once_by_another_tab_writes_the_texts_when_the_visitor_comes_back(app_env):
    """A visitor presses Generate and opens another tab before the page's run has reached the button: the run
    that follows is the other tab's, and the press would be lost without a word. The press's callback begins the
    writing, which goes on while the other tab is open; coming back shows it finished, and says so."""
    import wlm.generate as wlm_generate

    calls = []
    real_generate = wlm_generate.generate
    backend.writing.clear()
    at = run_app({"tab": "generate"})
    at.number_input(key="gen_words").set_value(20).run()
    at.button(key="gen_go").click()
    wlm_generate.generate = lambda *args, **kwargs: calls.append(kwargs) or real_generate(*args, **kwargs)
    try:
        open_tab(at, "Speed & accuracy")  # the press and the switch reach the server in one run
        assert_clean(at)
        begun = at.session_state["gen_result"]["writing"]  # begun, although the Generate tab did not run
        assert begun.wait(60) and len(calls) == 2  # written meanwhile: float and quantized
        open_tab(at, "Generate")
    finally:
        wlm_generate.generate = real_generate
    assert_clean(at)
    result = at.session_state["gen_result"]
    assert result["finished"] and result["writing"] is begun and len(result["float"]) == len(result["quantized"]) == 20
    assert _quiet(at) == [generate_tab.RESUMED]
    texts = [m.value for m in at.tabs[GENERATE_TAB].markdown if "line-height" in m.value]
    assert [html_words(t) for t in texts] == [result["float"], result["quantized"]]
    at.run()  # taken up once: the next run shows the same texts, not a new writing
    assert at.session_state["gen_result"] is result and len(calls) == 2


def test_a_press_whose_models_the_server_let_go_is_written_when_the_visitor_comes_back(app_env):
    """Streamlit keeps a button's callback arguments while the session shows it, so Generate's callback holds the
    models weakly (an upload's model is the server's caches' to let go). Let go before the press, the callback
    begins nothing, and the tab writes the texts when it is next open."""
    import gc

    backend.writing.clear()
    at = run_app({"tab": "generate"})
    at.number_input(key="gen_words").set_value(20).run()
    backend.quantized_variant.clear()  # the server lets the variant go, as its caches do an upload's
    backend._HELD_VARIANTS._values.clear()
    gc.collect()
    at.button(key="gen_go").click()
    open_tab(at, "Speed & accuracy")
    assert_clean(at)
    assert "gen_result" not in at.session_state  # nothing begun: the callback found the variant gone
    open_tab(at, "Generate")
    assert_clean(at)
    result = at.session_state["gen_result"]
    assert result["finished"] and len(result["float"]) == 20 and not _quiet(at)
