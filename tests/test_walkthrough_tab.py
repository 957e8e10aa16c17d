"""The Walkthrough tab: eight lesson cards, one at a time, each with its code, what the code printed and what to
notice; the step in the address bar; Previous and Next."""
import pytest

from wlm.checkpoint import load_model
from wlm.corpus import Corpus
from wlm.walkthrough import LESSONS, run_lesson

from apptest import assert_clean, run_app

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


@pytest.mark.parametrize("number", range(1, len(LESSONS) + 1))
def test_every_step_shows_its_code_its_output_and_what_to_notice(app_env, number):
    at = run_app({"step": str(number)})
    assert_clean(at)
    tab, heading, notices = _card(at)
    assert heading == [f"#### Step {number} of {len(LESSONS)}: {LESSONS[number - 1].title}"]
    codes = [c.value for c in tab.code]
    assert LESSONS[number - 1].code.rstrip() in codes  # the code as it runs
    assert len(codes) >= 2 or tab.table or tab.markdown  # and an output beside it
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
    assert [t.label for t in at.tabs if f"**{t.label}**](" in further]  # only tabs the app has are named
    assert all(f"**{name}**](" not in further for name in ("Inside a multiply", "Fewer bits")
               if name not in [t.label for t in at.tabs])
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
