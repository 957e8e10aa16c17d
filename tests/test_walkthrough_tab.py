"""The Walkthrough tab: eight lesson cards, one at a time, each with its code, what the code printed and what to
notice; the step in the address bar; Previous and Next."""
import io
import json
import re

import pytest
import torch
from torch import nn

from wlm.checkpoint import load_model
from wlm.corpus import Corpus
from wlm.lessons import LESSONS, run_lesson

from apptest import assert_clean, html_words, run_app
from conftest import TINY_TEXT, tutorial_int8, tutorial_loss

WALK = -1  # the Walkthrough is the last tab


def _card(at):
    """The open card: its heading, code blocks, notice."""
    tab = at.tabs[WALK]
    heading = [m.value for m in tab.markdown if m.value.startswith("#### Step ")]
    notices = [s.value for s in tab.success if s.value.startswith("**What to notice:**")]
    return tab, heading, notices


def _step(at) -> str:
    value = at.query_params["step"]
    return value[0] if isinstance(value, list) else value


# The tutorial's own figures (its pretrained weights, the whole test split, one thread, a MacBook), as it prints them.
TUTORIAL_COLUMNS = {"float, tutorial": ["113.9", "5.167", "209.20"], "quantized, tutorial": ["79.7", "5.168", "114.10"]}


def _megabytes(module: nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell() / 1e6


def _printed(tab, number: int, app_env) -> None:
    """The card shows what the step's code prints: derived here from the bundle, the corpus files and plain torch."""
    model = load_model(app_env["bundle"]).model
    codes = [c.value for c in tab.code]
    tables = [t.value for t in tab.table]
    texts = {split: text.splitlines() for split, text in TINY_TEXT.items()}
    vocabulary = {w for lines in texts.values() for line in lines for w in line.split()} | {"<eos>"}
    if number in (1, 2, 5, 8):  # the lesson's code, then what it printed
        assert len(codes) == 2 and not tables, codes
        printed = codes[1]
    if number == 1:
        assert str(model) in printed
        assert printed.endswith(f"total {sum(p.numel() for p in model.parameters()):,}")
    elif number == 2:
        lines = printed.splitlines()
        assert lines[0] == f"{len(vocabulary):,} words in the vocabulary"
        assert lines[1:4] == [f"{split}: {sum(len(line.split()) + 1 for line in texts[split]):,} tokens"
                              for split in ("train", "valid", "test")]
    elif number == 3:
        card = json.loads((app_env["bundle"] / "card.json").read_text())
        assert "recipe" not in card and "test_loss_fp32" not in card  # the tiny bundle's card records neither
        assert len(tables) == 1
        assert tables[0].to_dict("list") == {"": ["weights", "recipe", "test loss (float)"],
                                             "from the card": [str(app_env["bundle"]), "not recorded", "not recorded"]}
    elif number == 4:
        html = next(m.value for m in tab.markdown if "line-height" in m.value)
        words = html_words(html)
        assert len(words) == 30 and set(words) <= vocabulary, words
    elif number == 5:
        marked = [line for line in printed.splitlines() if line.startswith("+")]
        assert len(marked) == 2 and "(rnn): DynamicQuantizedLSTM(" in marked[0], marked
        assert "(decoder): DynamicQuantizedLinear(" in marked[1]
        assert any(line.startswith("    (encoder): Embedding(") for line in printed.splitlines())  # not replaced
    elif number == 6:
        assert len(tables) == 1
        shown, int8 = tables[0], tutorial_int8(model)
        parts = ("encoder", "rnn", "decoder")
        assert list(shown.index) == [*parts, "total"] and list(shown.columns) == ["float", "quantized"]
        for name, m in (("float", model), ("quantized", int8)):
            sizes = [_megabytes(getattr(m, part)) for part in parts]
            assert list(shown[name]) == pytest.approx([*sizes, sum(sizes)], rel=1e-9), name
        assert shown.loc["rnn", "quantized"] < shown.loc["rnn", "float"] / 2
    elif number == 7:
        assert len(tables) == 1
        shown = tables[0]
        ids = Corpus(app_env["data"]).test
        tokens = len(ids)  # the tiny split is shorter than any round size: all of it
        assert list(shown.index) == ["size (MB)", f"loss ({tokens:,} tokens here)", f"seconds ({tokens:,} tokens here)"]
        assert shown[list(TUTORIAL_COLUMNS)].to_dict("list") == TUTORIAL_COLUMNS
        for name, m in (("float, here", model), ("quantized, here", tutorial_int8(model))):
            assert abs(float(shown.iloc[1][name]) - tutorial_loss(m, ids)) <= 0.0005 + 1e-6, name
            assert float(shown.iloc[2][name]) >= 0
    elif number == 8:
        lines = printed.splitlines()
        assert [line.split()[0] for line in lines] == ["tutorial", "int8+emb8", "per-channel", "float16"]
        assert all(re.fullmatch(r"\S+ +\d+\.\d MB", line) for line in lines), lines
        assert lines[0] == f"{'tutorial':12} {_megabytes(tutorial_int8(model)):6.1f} MB"


@pytest.mark.parametrize("number", range(1, len(LESSONS) + 1))
def test_every_step_shows_its_code_its_output_and_what_to_notice(app_env, number):
    at = run_app({"step": str(number)})
    assert_clean(at)
    tab, heading, notices = _card(at)
    assert heading == [f"#### Step {number} of {len(LESSONS)}: {LESSONS[number - 1].title}"]
    codes = [c.value for c in tab.code]
    assert LESSONS[number - 1].code.rstrip() in codes  # the code as it runs
    _printed(tab, number, app_env)  # and what that code printed, run now
    assert len(notices) == 1 and len(notices[0]) > 40
    assert _step(at) == str(number)
    if number != 7:  # step 7's notice holds timings, which differ from run to run
        # The card shows what the lesson's code gives on the same model and corpus, run here on its own.
        loaded = load_model(app_env["bundle"])
        names = {"model": loaded.model, "loaded": loaded, "corpus": Corpus(app_env["data"]),
                 "dictionary": loaded.dictionary, "seed": 0, "tokens": 0}
        alone = run_lesson(number, names)
        assert notices[0] == f"**What to notice:** {alone.notice}"
        if number in (1, 2, 8):
            assert alone.output.rstrip() in codes


def test_next_and_previous_move_one_card_and_update_the_address_bar(app_env):
    at = run_app()
    assert_clean(at)
    assert _card(at)[1][0].startswith("#### Step 1 of 8") and _step(at) == "1"
    assert at.button(key="walk_prev").disabled
    at.button(key="walk_next").click().run()
    at.button(key="walk_next").click().run()
    assert_clean(at)
    assert _card(at)[1] == [f"#### Step 3 of 8: {LESSONS[2].title}"] and _step(at) == "3"
    at.button(key="walk_prev").click().run()
    assert _card(at)[1][0].startswith("#### Step 2 of 8") and _step(at) == "2"
    # The sidebar's setup stays in the link beside the step.
    assert at.query_params["preset"] in ("tutorial", ["tutorial"])
    last = run_app({"step": "8"})
    assert last.button(key="walk_next").disabled
    assert _card(last)[1][0].startswith("#### Step 8 of 8")


@pytest.mark.parametrize("raw", ["0", "9", "-3", "four", "2.5", ""])
def test_a_step_out_of_range_or_not_a_number_opens_step_1(app_env, raw):
    at = run_app({"step": raw, "seed": "3"})
    assert_clean(at)
    assert _card(at)[1][0].startswith("#### Step 1 of 8") and _step(at) == "1"
    assert at.sidebar.number_input(key="seed").value == 3  # the rest of the link still applies


def test_the_last_card_names_the_tabs_that_go_further_and_the_torchao_note(app_env):
    at = run_app({"step": "8"})
    assert_clean(at)
    tab = at.tabs[WALK]
    further = next(m.value for m in tab.markdown if m.value.startswith("Go further"))
    for name in ("Model", "Fidelity", "Speed & accuracy"):
        assert f"**{name}**](" in further
    # Each tab is a link to this page with the same setup, opening on that tab.
    assert "?src=bundled&preset=tutorial" in further and "&tab=speed-accuracy)" in further and "step=" not in further
    # One link per tab that shows what the tutorial left out, in the card's order, each a tab this app has.
    named = re.findall(r"^- \[\*\*(.+?)\*\*\]\(", further, flags=re.M)
    assert named == ["Model", "Fidelity", "Speed & accuracy", "Inside a multiply", "Fewer bits"]
    assert set(named) <= {t.label for t in at.tabs}
    assert any("torchao" in i.value and "905 tok/s" in i.value for i in tab.info)


@pytest.mark.parametrize("query, opens", [({"step": "4"}, "Walkthrough"), ({"tab": "fidelity"}, "Fidelity"),
                                          ({"tab": "Speed & accuracy"}, "Speed & accuracy"),
                                          ({"tab": "fewer-bits", "step": "2"}, "Fewer bits"),
                                          ({"tab": "nonsense"}, None), ({}, None)])
def test_a_link_chooses_the_tab_the_page_opens_on(app_env, query, opens):
    at = run_app(query)
    assert_clean(at)
    assert at.session_state["_opening_tab"] == opens
    if "tab" in query:  # kept in the address bar, so the link can be shared again
        assert at.query_params["tab"] in (query["tab"], [query["tab"]])
