"""The Walkthrough tab: eight lesson cards, one at a time, each with its code, what the code printed and what to
notice; the step in the address bar; Previous and Next."""
import contextlib
import io
import json
import re

import pytest
import torch
from torch import nn

from wlm.bundle import save_bundle
from wlm.checkpoint import load_model
from wlm.corpus import Corpus
from wlm.lessons import LESSONS, TORCHAO_MEASURED, run_lesson

from apptest import assert_clean, html_words, run_app
from conftest import TINY_TEXT, tutorial_int8, tutorial_loss, write_corpus

WALK = 6  # the Walkthrough's place among the tabs


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
        assert tables[0].to_dict("list") == {"": ["weights", "recipe", "test loss (float)"],
                                             "from the card": [str(app_env["bundle"]), "not recorded", "not recorded"]}
        # Then the full card (in its expander) as tables, not JSON: its plain fields, then its config on its own.
        assert not tab.get("json")
        assert [t.to_dict("list") for t in tables[1:]] == [
            {"field": ["name", "weights_dtype"], "value": ["tiny test model", "float32"]},
            {"field": list(card["config"]), "value": [str(v) for v in card["config"].values()]}]
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
    assert tab.code and all(c.proto.wrap_lines for c in tab.code)  # no block needs scrolling sideways
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
    at = run_app({"tab": "walkthrough"})
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
    # Each link carries what its tab reads, though the Walkthrough's own address leaves it out.
    speed_link = re.search(r"\*\*Speed & accuracy\*\*\]\((\S+?)\)", further).group(1)
    assert "threads=1" in speed_link and "threads" not in at.query_params
    # One link per tab that shows what the tutorial left out, in the card's order, each a tab this app has.
    named = re.findall(r"^- \[\*\*(.+?)\*\*\]\(", further, flags=re.M)
    assert named == ["Model", "Fidelity", "Speed & accuracy", "Inside a multiply", "Fewer bits", "Static or dynamic",
                     "When int8 pays", "Which parts"]
    assert set(named) <= {t.label for t in at.tabs}
    assert any("torchao" in i.value and "905 tok/s" in i.value for i in tab.info)


@pytest.mark.parametrize("query, opens", [({"step": "4"}, "Walkthrough"), ({"tab": "fidelity"}, "Fidelity"),
                                          ({"tab": "Speed & accuracy"}, "Speed & accuracy"),
                                          ({"tab": "fewer-bits", "step": "2"}, "Fewer bits"),
                                          ({"tab": "nonsense"}, "Model"), ({}, "Model")])
def test_a_link_chooses_the_tab_the_page_opens_on(app_env, query, opens):
    at = run_app(query)
    assert_clean(at)
    assert at.session_state["open_tab"] == opens
    # The address bar names the open tab the way links do, so the link can be shared again.
    slug = {"Walkthrough": "walkthrough", "Fidelity": "fidelity", "Speed & accuracy": "speed-accuracy",
            "Fewer bits": "fewer-bits", "Model": "model"}[opens]
    assert at.query_params["tab"] in (slug, [slug])
    assert ("step" in at.query_params) == (opens == "Walkthrough")  # only the Walkthrough reads a step


def test_the_torchao_note_says_where_and_when_it_was_measured_and_that_it_is_not_live(app_env):
    at = run_app({"tab": "walkthrough", "step": "8"})
    assert_clean(at)
    (note,) = [i.value for i in at.tabs[WALK].info if "torchao" in i.value]
    assert "Measured here" not in note and "**Not measured live:**" in note
    for value in TORCHAO_MEASURED.values():  # the machine, the date, torch's and torchao's versions
        assert value in note, value
    assert "Intel Xeon" in note and "torch 2.13" in note and "torchao 0.18" in note


def test_the_full_model_card_is_tables_not_json(trained_tiny, tmp_path, monkeypatch):
    model, corpus = trained_tiny
    card = {"name": "rich card", "recipe": {"optimizer": "adamw", "lr": 0.002, "sparse_embedding": False},
            "history": [{"epoch": 1, "batches": 2984, "valid_loss": 5.637529680984498},
                        {"epoch": 2, "batches": 2984, "valid_loss": 5.3189}],
            "test_loss_fp32": 5.0834}
    save_bundle(model, corpus.dictionary, tmp_path / "rich", card, dtype=torch.float32)
    monkeypatch.setenv("WLM_MODEL", str(tmp_path / "rich"))
    monkeypatch.setenv("WLM_DATA_DIR", str(write_corpus(tmp_path / "corpus")))
    at = run_app({"tab": "walkthrough", "step": "3"})
    assert_clean(at)
    tab = at.tabs[WALK]
    assert not tab.get("json")
    facts, plain, recipe, config, history = (t.value for t in tab.table)
    assert facts.to_dict("list")["from the card"] == [str(tmp_path / "rich"), "optimizer adamw, lr 0.002", "5.0834"]
    assert plain.to_dict("list") == {"field": ["name", "test_loss_fp32", "weights_dtype"],
                                     "value": ["rich card", "5.0834", "float32"]}
    assert recipe.to_dict("list") == {"field": ["optimizer", "lr", "sparse_embedding"],
                                      "value": ["adamw", "0.002", "no"]}
    assert config.to_dict("list")["field"] == ["ntoken", "ninp", "nhid", "nlayers", "dropout"]
    assert history.to_dict("list") == {"epoch": ["1", "2"], "valid loss": ["5.638", "5.319"]}  # a row per epoch
    assert "In every row: batches 2984." in [c.value for c in tab.caption]  # said once, so the table fits a phone
    titles = [m.value for m in tab.markdown if m.value in ("**recipe**", "**config**", "**history**")]
    assert titles == ["**recipe**", "**config**", "**history**"]  # each nested record under its own name


@pytest.fixture
def fresh_step_7():
    """Step 7 measured afresh: neither its run nor its estimate is cached."""
    from ui import backend

    backend.lesson_result.clear()
    backend._lesson_estimate.clear()
    yield backend
    backend.lesson_result.clear()
    backend._lesson_estimate.clear()


def test_step_7_shows_its_estimate_before_running_and_its_progress_on_the_page(app_env, fresh_step_7, monkeypatch):
    from ui import widgets

    probed = {"model": 120.4, "quantized": 70.2}  # what the probe found (its own test: tests/test_walkthrough.py)
    monkeypatch.setattr(fresh_step_7, "estimate_seconds", lambda lesson, arguments: dict(probed))
    reports, shown = [], widgets.SessionPage.progress

    @contextlib.contextmanager
    def recorded(self, text):
        with shown(self, text) as report:
            yield lambda fraction, detail="": (reports.append((text, fraction, detail)), report(fraction, detail))

    monkeypatch.setattr(widgets.SessionPage, "progress", recorded)
    at = run_app({"tab": "walkthrough", "step": "7"})
    assert_clean(at)
    tab = at.tabs[WALK]
    tokens = len(Corpus(app_env["data"]).test)  # the tiny split is shorter than any round size: all of it
    (estimate,) = [c.value for c in tab.caption if "estimated from timing each" in c.value]
    assert (f"Evaluating `model` and `quantized` on {tokens:,} test tokens takes about 191 s here on one thread "
            "(`model` about 120 s, `quantized` about 70 s)") in estimate
    # The estimate comes before what the run printed: the page shows it while the run is still to come.
    order = [e for e in tab if getattr(e, "type", None) in ("caption", "table")]
    assert [e.type for e in order].index("caption") < [e.type for e in order].index("table")
    # Every evaluate call of the lesson's code reached the page's progress bar, each weighted by its estimate.
    details = [d for _, _, d in reports]
    assert any(d.startswith("evaluate of `model` (1 of 2)") for d in details), details
    assert details[-1] == f"evaluate of `quantized` (2 of 2), {tokens - 1:,}/{tokens - 1:,} tokens"
    fractions = [f for _, f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    (model_done,) = [f for _, f, d in reports if d == f"evaluate of `model` (1 of 2), {tokens - 1}/{tokens - 1} tokens"]
    assert model_done == pytest.approx(120.4 / (120.4 + 70.2))  # float's share of the estimated time
    # And the code shown is the code that ran: unchanged, no hook written into it.
    assert LESSONS[6].code.rstrip() in [c.value for c in tab.code] and "progress" not in LESSONS[6].code
