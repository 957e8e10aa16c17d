"""The Fidelity tab's surprise box: a short text word by word, each word's float and quantized surprise stacked
together so they line up however the text wraps; a long text summed up (its surprise along the text, the words
quantizing changed most) instead of thousands of shaded words. Every number against ``surprisal_pair``."""
import re

import pytest

from ui.charts import word_html
from wlm.quantize import PRESETS, quantize
from wlm.surprisal import most_changed, surprisal_pair, surprise_along

from apptest import assert_clean, chart_data, run_app, takeaways

FIDELITY = 3
WORD = re.compile(r"<span title='([^']*)' style='[^']*'><span style='[^']*'>([^<]*)</span>"
                  r"<span style='[^']*'>([^<]*)</span></span>")


@pytest.fixture
def opened(app_env):
    at = run_app({"tab": "fidelity"})
    assert_clean(at)
    model, corpus = app_env["model"], app_env["corpus"]
    return at, model, quantize(model, PRESETS["tutorial"]), corpus.dictionary


def _tab(at):
    tab = at.tabs[FIDELITY]
    assert tab.label == "Fidelity"
    return tab


def test_a_short_text_shows_each_words_two_surprises_together(opened):
    at, model, quant, dictionary = opened
    text = "the dog sat on the giraffe\nand a cat ran"
    at.text_area(key="sur_text").set_value(text).run()
    assert_clean(at)
    expected = surprisal_pair(model, quant, dictionary, text)
    (shown,) = [m.value for m in _tab(at).markdown if "<i>float</i>" in m.value]
    blocks = WORD.findall(shown)  # one block a word: its tooltip, the word (float's shade), the change
    assert [w for _, w, _ in blocks] == ["the", "dog", "sat", "on", "the", "giraffe?", "⏎", "and", "a", "cat",
                                        "ran"]
    for (tip, _, change), row in zip(blocks, expected.itertuples()):
        if row.word == "giraffe":  # this vocabulary has no <unk>: the word has no loss
            assert tip == "not in the vocabulary, which has no &lt;unk&gt;: not scored" and change == "–"
            continue
        assert tip == f"float {row.loss_float:.3f} nats, quantized {row.loss_quant:.3f} nats, change {row.delta:+.3f}"
        assert change == ("0.00" if abs(row.delta) < 0.005 else f"{row.delta:+.2f}")
    assert shown.count("dashed") == 1  # the unknown word, outlined once
    assert shown.count("display:inline-flex") == len(expected) + 1  # the words and the key in front of them
    captions = [c.value for c in _tab(at).caption]
    assert word_html.SURPRISAL_KEY in captions
    assert f"**Takeaway:** {word_html.surprisal_takeaway(expected)} Darker = more surprised (per-word loss)." \
        in takeaways(_tab(at))
    assert not _tab(at).get("vega_lite_chart")[1:] and not _tab(at).dataframe


def test_a_long_text_is_summed_up_not_shaded_word_by_word(opened):
    at, model, quant, dictionary = opened
    words = ("the cat sat on the mat and the dog ran on the log\n" * 40).split(" ")
    text = " ".join(words)
    at.text_area(key="sur_text").set_value(text).run()
    assert_clean(at)
    tab = _tab(at)
    expected = surprisal_pair(model, quant, dictionary, text)
    n = len(expected)
    assert n > word_html.SHOWN_WORDS
    assert not [m for m in tab.markdown if "<i>float</i>" in m.value]  # no word-by-word shading
    assert any(c.value.startswith(f"{n:,} words are too many to shade one by one") for c in tab.caption)
    # The chart: each model's mean loss over runs of words, as surprise_along measures it.
    along = surprise_along(expected, word_html.ALONG_RUNS)
    (data,) = [d for d in map(chart_data, tab.get("vega_lite_chart")) if "middle" in d[0].columns]
    shown = data[0].pivot(index="middle", columns="model", values="loss")
    assert shown["float"].tolist() == pytest.approx(along["loss_float"].tolist())
    assert shown["quantized"].tolist() == pytest.approx(along["loss_quant"].tolist())
    figure = word_html.surprise_along_chart(expected)
    assert f"**Takeaway:** {figure.takeaway}" in takeaways(tab)
    # The table: the words quantizing changed most, with both losses and the change.
    (table,) = tab.dataframe
    top = most_changed(expected, word_html.MOST_CHANGED)
    assert table.value["at word"].tolist() == [f"{p + 1:,}" for p in top["position"]]
    assert table.value["word"].tolist() == ["⏎" if w == "<eos>" else w for w in top["word"]]
    assert table.value["change"].tolist() == pytest.approx(top["delta"].round(3).tolist())
    assert table.value["float (nats)"].tolist() == pytest.approx(top["loss_float"].round(3).tolist())
    assert f"**Takeaway:** {word_html.surprisal_takeaway(expected, outlined=False)}" in takeaways(tab)  # no shading


def test_the_long_texts_chart_and_table_say_what_they_measure(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    text = "the cat sat on the mat and the dog ran on the log " * 20 + "the cat"  # 262 words: runs of 3, the last of 1
    table = surprisal_pair(model, quant, corpus.dictionary, text)
    figure = word_html.surprise_along_chart(table)
    along = surprise_along(table, word_html.ALONG_RUNS)
    widest = along.loc[along["delta"].abs().idxmax()]
    assert figure.takeaway.startswith("Each point is the mean loss of 3 consecutive words (88 points for 262 words, "
                                      "the last of 1).")
    assert f"differ by at most {abs(widest['delta']):.3f} nats (words {int(widest['first']) + 1:,}–" in figure.takeaway
    layers = figure.chart.to_dict()["layer"]
    assert [layer["encoding"]["x"]["scale"]["domain"] for layer in layers] == [[1, 262]] * 2
    rows = word_html.most_changed_table(table, 4)
    first = most_changed(table, 4)["position"][0]
    assert rows["in the text"][0].count("[") == 1 and f"[{table['word'][first]}]" in rows["in the text"][0]
