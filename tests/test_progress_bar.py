"""A progress bar on the page moves a few times a second, however often the work reports: each move is a message
to the browser and a redraw there, on the cores the work itself may be timed on."""
from ui import widgets


class Bar:
    def __init__(self, moves: list):
        self.moves = moves

    def progress(self, value, text):
        self.moves.append((round(value, 2), text))

    def empty(self):
        self.moves.append("cleared")


def test_a_progress_bar_moves_at_most_five_times_a_second_and_always_shows_its_end(monkeypatch):
    moves: list = []
    monkeypatch.setattr(widgets.st, "progress", lambda value, text: Bar(moves))
    clock = iter([100.0, 100.05, 100.1, 100.25, 100.3, 100.31])
    monkeypatch.setattr(widgets.time, "monotonic", lambda: next(clock))
    with widgets.SessionPage().progress("Evaluating fp32") as report:
        for fraction in (0.1, 0.2, 0.3, 0.4, 0.5, 1.0):
            report(fraction, f"{fraction:.0%}")
    assert moves == [(0.1, "Evaluating fp32 10%"),  # the first report shows at once
                     (0.4, "Evaluating fp32 40%"),  # 0.25 s later; the two reports in between did not move it
                     (1.0, "Evaluating fp32 100%"),  # the end shows however soon it comes
                     "cleared"]
