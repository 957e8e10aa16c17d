"""The Walkthrough tab: eight lesson cards, one at a time, each with its code, what the code printed and what to
notice; the step in the address bar; Previous and Next."""
import pytest

from wlm.walkthrough import LESSONS

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
