"""What a waiting page sends its browser: a class's pages wait on the same shared machine whose cores compute their
results, so a page redraws only what changed: its place in a queue when the place moves, a text being written a
few times a second in all, however many pages follow writings, and the parts of the front end that draw results
are loaded before anything is pressed."""
import contextlib

import pytest

import ui.generate_tab as generate_tab
from ui import widgets


class Box:
    def __init__(self, drawn: list, name: str = ""):
        self.drawn, self.name = drawn, name

    def info(self, text, icon=None):
        self.drawn.append(text)

    def markdown(self, text):
        self.drawn.append((self.name, text))

    def caption(self, text):
        self.drawn.append((self.name, "waiting"))

    def empty(self):
        self.drawn.append("cleared")


def test_a_queued_page_redraws_its_notice_only_when_its_place_moves(monkeypatch):
    drawn, yields = [], []
    monkeypatch.setattr(widgets.st, "empty", lambda: Box(drawn))
    monkeypatch.setattr(widgets, "yield_to_streamlit", lambda: yields.append(1))
    notice = widgets.SessionPage().queue_notice()
    for place in (3, 3, 3, 2, 2, 1, 1, 1):  # called about twice a second while the request waits
        notice.show(place)
    notice.clear()
    assert drawn == ["Other visitors' requests are running on this shared server; yours is number 3 in the queue.",
                     "Other visitors' requests are running on this shared server; yours is number 2 in the queue.",
                     "Another visitor's request is running on this shared server; yours is next and starts when "
                     "it ends.", "cleared"]
    assert len(yields) == 5  # every call without a redraw still lets Streamlit end the wait of a rerun page


class Job:
    """A writing as a page sees it: each ``wait`` is one look, a quarter of a second later on the page's clock."""

    def __init__(self, looks: list[tuple[bool, int]], clock: list[float]):
        self.looks, self.clock, self.at = looks, clock, -1  # each look: (begun, words written by each model)
        self.error, self.seconds = None, {"float": 1.0, "quantized": 1.0}

    def wait(self, seconds: float) -> bool:
        self.at += 1
        self.clock[0] += seconds
        return self.at == len(self.looks) - 1

    @property
    def started(self) -> bool:
        return self.looks[self.at][0]

    def snapshot(self) -> dict[str, list[str]]:
        n = self.looks[self.at][1]
        return {"float": [f"f{i}" for i in range(n)], "quantized": [f"q{i}" for i in range(n)]}


def _follow(monkeypatch, looks: list[tuple[bool, int]]) -> tuple[list, dict, int]:
    """Follow a writing of ``looks``; returns what each box drew, the record and how often Streamlit was let in."""
    clock, drawn, yields = [1000.0], [], []
    monkeypatch.setattr(generate_tab.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(generate_tab, "yield_to_streamlit", lambda: yields.append(1))
    record = {"float": [], "quantized": [], "seconds": {}, "writing": Job(looks, clock)}
    generate_tab._follow(record, {name: Box(drawn, name) for name in ("float", "quantized")})
    return drawn, record, len(yields)


def _words_drawn(drawn: list) -> list:
    """How many words the float box showed at each of its redraws ('waiting' while the writing waited its turn)."""
    return [text if text == "waiting" else len(text.split()) for name, text in drawn if name == "float"]


def test_a_page_alone_redraws_a_text_at_each_look_that_found_new_words(monkeypatch):
    looks = [(False, 0), (False, 0), (True, 0), (True, 3), (True, 3), (True, 7), (True, 7), (True, 9)]
    drawn, record, yields = _follow(monkeypatch, looks)
    assert _words_drawn(drawn) == ["waiting", 0, 3, 7, 9]  # never the same text twice
    assert yields == 3
    assert record["finished"] and record["float"] == [f"f{i}" for i in range(9)]
    assert record["first_difference"] == 0


def test_the_pages_of_a_class_following_writings_redraw_sixteen_times_a_second_in_all(monkeypatch):
    looks = [(True, n) for n in range(1, 41)]  # ten seconds of writing, new words at every look
    with contextlib.ExitStack() as others:
        for _ in range(31):  # 31 other pages of this server follow writings: with this one, each redraws every 2 s
            others.enter_context(generate_tab.FOLLOWERS.following())
        assert generate_tab.FOLLOWERS.redraw_every() == pytest.approx(31 / generate_tab.REDRAWS_PER_SECOND)
        drawn, record, yields = _follow(monkeypatch, looks)
    assert _words_drawn(drawn) == [1, 9, 17, 25, 33, 40]  # every 8th look (2 s), and the end however soon
    assert yields == 40 - 6  # looked at four times a second all the same, so a rerun is not kept waiting
    assert record["float"] == [f"f{i}" for i in range(40)]  # the record has every word, drawn or not
    assert generate_tab.FOLLOWERS.redraw_every() == generate_tab.LOOK_EVERY  # they all left


def test_the_front_ends_chart_and_table_parts_are_found_in_this_streamlit():
    # A Streamlit whose front end names them otherwise still works, each part loading on first use; this test
    # says when FRONT_END_PARTS must follow it.
    modules = widgets.front_end_modules()
    assert [name.split(".")[0] for name in modules] == list(widgets.FRONT_END_PARTS)
    assert all((widgets.FRONT_END_FILES / name).is_file() for name in modules)
