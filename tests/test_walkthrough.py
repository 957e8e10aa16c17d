"""The walkthrough's lessons: each lesson's code, run exactly as the page shows it on the tiny bundle and corpus,
prints and leaves behind the numbers the card displays, and they match what wlm measures on its own."""
import contextlib
import io
import math
import shutil

import pytest
import torch

from wlm import lessons
from wlm.checkpoint import load_model
from wlm.evaluate import EvalResult, evaluate, reporting_to
from wlm.generate import generate
from wlm.lessons import LESSONS, TUTORIAL, changed_parts, marked_architecture, run_lesson, size_table, speed_table
from wlm.quantize import PRESETS, quantize
from wlm.sizes import module_sizes, state_dict_bytes
from wlm.threads import num_threads


@pytest.fixture(scope="module")
def names(tiny_app):
    loaded = load_model(tiny_app["bundle"])
    return {"model": loaded.model, "loaded": loaded, "corpus": tiny_app["corpus"], "dictionary": loaded.dictionary,
            "seed": 3, "tokens": 60}  # the tiny test split has 80


def _as_shown(number: int, names: dict, earlier: dict | None = None) -> tuple[str, dict]:
    """The card's code block run with plain exec and the real print: what a student pasting it would get."""
    namespace = {**names, **(earlier or {})}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), num_threads(torch.get_num_threads()):
        exec(LESSONS[number - 1].code, namespace)
    return out.getvalue(), namespace


def test_each_lesson_prints_what_its_code_prints_when_pasted(names):
    earlier: dict = {}
    for number in (1, 2, 3, 4, 5, 6, 8):
        run = run_lesson(number, names, earlier)
        printed, _ = _as_shown(number, names, earlier.get(5) if number == 6 else None)
        assert run.output == printed, number
        assert run.notice and "{" not in run.notice


def test_define_and_data_count_what_the_model_and_corpus_hold(names):
    model, corpus = names["model"], names["corpus"]
    one = run_lesson(1, names)
    assert sum(one.values["weights"].values()) == sum(p.numel() for p in model.parameters())
    assert one.output.startswith("LSTMModel(") and f"total {sum(p.numel() for p in model.parameters()):,}" in one.output
    two = run_lesson(2, names)
    assert f"{len(corpus.dictionary):,} words in the vocabulary" in two.output
    assert f"test: {len(corpus.test):,} tokens" in two.output
    words = [corpus.dictionary.idx2word[i] for i in two.values["line"]]
    assert words == "a dog sat on the mat <eos>".split()  # the tiny test split's first line
    assert f"is {len(words)} of them" in two.notice


def test_weights_come_from_the_card(names, tiny_app):
    three = run_lesson(3, names)
    assert three.values["facts"]["weights"] == names["loaded"].source
    assert three.values["facts"]["test loss (float)"] == "not recorded"  # the tiny bundle's card has no losses
    assert three.notice.startswith("Their card records no test loss")
    card = {**names["loaded"].card, "recipe": {"optimizer": "adamw", "lr": 0.002, "epochs": 4},
            "test_loss_fp32": 5.0834}
    loaded = type(names["loaded"])(names["model"], "somewhere", names["dictionary"], card)
    scored = run_lesson(3, {**names, "loaded": loaded})
    bare = type(names["loaded"])(names["model"], "a .pth", names["dictionary"])
    assert run_lesson(3, {**names, "loaded": bare}).notice.startswith("These weights carry no card")
    assert scored.values["facts"] == {"weights": "somewhere", "recipe": "optimizer adamw, lr 0.002, epochs 4",
                                      "test loss (float)": 5.0834}
    assert "5.083" in scored.notice and "lower than the tutorial weights' 5.167" in scored.notice


def test_generate_writes_what_wlm_generate_writes_from_the_seed(names):
    four = run_lesson(4, names)
    expected = list(generate(names["model"], names["dictionary"], words=30, temperature=1.0, seed=3))
    assert four.values["words"] == expected and four.output.strip() == " ".join(expected)
    assert f"{len(set(expected))} of them different" in four.notice


def test_quantize_is_the_tutorials_variant_and_marks_what_changed(names):
    model = names["model"]
    five = run_lesson(5, names)
    quantized = five.values["quantized"]
    ours = quantize(model, PRESETS["tutorial"])
    x = torch.tensor([[1], [2], [3]])
    assert torch.equal(quantized(x, model.init_hidden(1))[0], ours(x, model.init_hidden(1))[0])
    assert changed_parts(model, quantized) == {"encoder": ("Embedding", "Embedding"),
                                               "rnn": ("LSTM", "DynamicQuantizedLSTM"),
                                               "decoder": ("Linear", "DynamicQuantizedLinear")}
    marked = [line for line in marked_architecture(model, quantized).splitlines() if line.startswith("+")]
    assert [line.split(":")[0].strip("+ ") for line in marked] == ["(rnn)", "(decoder)"]
    assert "replaced 2 of 3 parts" in five.notice and "encoder (Embedding) stayed float" in five.notice


def test_size_and_speed_are_the_bytes_and_losses_wlm_measures(names):
    earlier: dict = {}
    six = run_lesson(6, names, earlier)  # runs lesson 5 first: opened from a link, it still works
    quantized = earlier[5]["quantized"]
    by_attr = {"embedding": "encoder", "lstm": "rnn", "decoder": "decoder"}
    for label, model in (("float", names["model"]), ("quantized", quantized)):
        expected = {by_attr[part]: size / 1e6 for part, size in module_sizes(model).items()}
        assert six.values["sizes"][label] == pytest.approx(expected)
    table = size_table(six.values["sizes"])
    assert table.loc["total", "quantized"] < table.loc["total", "float"]
    assert table.loc["encoder", "quantized"] == pytest.approx(table.loc["encoder", "float"])
    assert f"{table.loc['total', 'float']:.1f} → {table.loc['total', 'quantized']:.1f} MB" in six.notice
    with num_threads(torch.get_num_threads()):  # the lesson sets one thread, as the tutorial; keep the suite's
        seven = run_lesson(7, names, earlier)
    results = seven.values["results"]
    test = names["corpus"].test[:60]
    assert results["float"]["loss"] == evaluate(names["model"], test).loss
    assert results["quantized"]["loss"] == evaluate(quantized, test).loss
    assert results["quantized"]["size_mb"] == state_dict_bytes(quantized) / 1e6
    shown = speed_table(results, 60)
    assert list(shown.loc["size (MB)", ["float, tutorial", "quantized, tutorial"]]) == list(TUTORIAL["size_mb"])
    assert shown.loc["loss (60 tokens here)", "quantized, here"] == results["quantized"]["loss"]
    assert shown.loc["seconds (60 tokens here)", "float, here"] == results["float"]["seconds"]
    assert "On 60 tokens" in seven.notice and f"{results['quantized']['loss'] - results['float']['loss']:+.3f}" \
        in seven.notice


def test_beyond_measures_every_variant_it_names(names):
    eight = run_lesson(8, names)
    for name, mb in eight.values["beyond"].items():
        assert mb == state_dict_bytes(quantize(names["model"], PRESETS[name])) / 1e6
    assert eight.values["beyond"]["int8+emb8"] < eight.values["beyond"]["tutorial"]


def test_there_is_no_lesson_0_or_9(names):
    for number in (0, len(LESSONS) + 1):
        with pytest.raises(ValueError):
            run_lesson(number, names)


# --- the lesson files --------------------------------------------------------------------------------------------

def test_the_lesson_files_are_the_steps_in_the_order_of_their_names():
    files = sorted(p.name for p in lessons.FOLDER.glob("[0-9][0-9]_*.py"))
    assert files[0] == "01_define.py" and files[-1] == "08_beyond.py" and len(files) == 8
    assert [lesson.file for lesson in LESSONS] == files
    assert [lesson.number for lesson in LESSONS] == list(range(1, len(files) + 1))
    assert [lesson.title for lesson in LESSONS][:2] == ["Define the model", "Load the data"]
    # What the app's caches and queues go by, read from the files' declarations.
    assert LESSONS[5].needs == LESSONS[6].needs == {"quantized": 5}
    assert [lesson.number for lesson in LESSONS if lesson.kept] == [5]
    assert [lesson.number for lesson in LESSONS if lesson.timed] == [7]
    assert LESSONS[6].inputs == {"model", "corpus", "tokens"} and LESSONS[1].inputs == {"corpus"}


def test_each_lesson_gives_exactly_what_it_declares(names):
    earlier: dict = {}
    for lesson in LESSONS:
        with num_threads(torch.get_num_threads()):
            run = run_lesson(lesson.number, names, earlier)
        assert sorted(run.values) == sorted(lesson.gives), lesson.file
        # and reads nothing it does not declare: its shown code runs on its READS and NEEDS alone
        declared = {name: names[name] for name in lesson.reads}
        declared.update({name: earlier[giver][name] for name, giver in lesson.needs.items()})
        with num_threads(torch.get_num_threads()):
            printed, namespace = _as_shown(lesson.number, declared)
        assert set(lesson.gives) <= set(namespace), lesson.file


def test_the_code_shown_is_the_lessons_function_body():
    five = LESSONS[4]
    assert five.code.startswith("import torch\nfrom torch import nn\n\nquantized = ")
    assert "return" not in five.code and "def lesson" not in five.code
    assert five.code.endswith("print(quantized)\n")


NEW_LESSON = """\
from __future__ import annotations

TITLE = "Count the words the decoder scores"
READS = ("dictionary",)
NEEDS = ("quantized",)
GIVES = ("scored",)
SHOWS = "printed"
EXPLAIN = "The decoder scores every word of the vocabulary, quantized or not."


def lesson(dictionary, quantized):
    scored = quantized.decoder.out_features
    print(f"{len(dictionary):,} words, {scored:,} scores")
    return {"scored": scored}


def notice(values: dict) -> str:
    return f"One score per word: {values['scored']:,} of them."
"""


@pytest.fixture
def lessons_copy(tmp_path):
    """A copy of the lesson files in a folder of their own."""
    folder = tmp_path / "lessons"
    shutil.copytree(lessons.FOLDER, folder, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return folder


def test_a_lesson_file_dropped_into_the_folder_is_the_next_step(lessons_copy, names):
    (lessons_copy / "09_scores.py").write_text(NEW_LESSON)
    (lessons_copy / "notes.py").write_text("not a lesson: its name has no number\n")
    found = lessons.discover(lessons_copy)
    assert [lesson.file for lesson in found] == [lesson.file for lesson in LESSONS] + ["09_scores.py"]
    nine = found[8]
    assert nine.number == 9 and nine.title == "Count the words the decoder scores" and nine.needs == {"quantized": 5}
    assert nine.code == ("scored = quantized.decoder.out_features\n"
                         'print(f"{len(dictionary):,} words, {scored:,} scores")\n')
    assert nine.inputs == {"dictionary", "model"}  # the model through step 5
    run = run_lesson(9, names, lessons=found)  # runs step 5 first
    words = len(names["dictionary"])
    assert run.output == f"{words:,} words, {words:,} scores\n" and run.values == {"scored": words}
    assert run.notice == f"One score per word: {words:,} of them."


@pytest.mark.parametrize("change, message", [
    (("def lesson(dictionary, quantized):", "def lesson(dictionary, quantized, seed):"), "READS and NEEDS say"),
    (('READS = ("dictionary",)', 'READS = ("dictionary", "weather")'), "which the setup does not have"),
    (('NEEDS = ("quantized",)', 'NEEDS = ("forecast",)'), "which no earlier lesson GIVES"),
    (('    return {"scored": scored}\n', ""), "must end with `return {...}`"),
    (('TITLE = "Count the words the decoder scores"\n', ""), "does not define TITLE"),
    (('SHOWS = "printed"', 'SHOWS = "printed"\nEVALUATES = ("quantized",)'), "must READ `corpus` and `tokens`"),
    (('SHOWS = "printed"', 'SHOWS = "printed"\nEVALUATES = ("model",)'), "each must be a name it READS or NEEDS"),
])
def test_a_lesson_file_that_breaks_the_format_fails_as_it_loads(lessons_copy, change, message):
    (lessons_copy / "09_scores.py").write_text(NEW_LESSON.replace(*change))
    with pytest.raises(lessons.LessonError, match=message) as raised:
        lessons.discover(lessons_copy)
    assert "09_scores.py" in str(raised.value)


def test_a_lesson_that_gives_other_names_than_it_declares_fails_as_it_runs(lessons_copy, names):
    (lessons_copy / "09_scores.py").write_text(NEW_LESSON.replace('GIVES = ("scored",)', 'GIVES = ("counted",)'))
    with pytest.raises(lessons.LessonError, match=r"GIVES \['counted'\] but returned \['scored'\]"):
        run_lesson(9, names, lessons=lessons.discover(lessons_copy))


def test_what_a_lesson_prints_stays_with_its_run_while_others_run_at_once(names):
    from concurrent.futures import ThreadPoolExecutor

    alone = {number: run_lesson(number, names).output for number in (1, 2, 3)}
    with ThreadPoolExecutor(6) as pool:
        outputs = list(pool.map(lambda number: (number, run_lesson(number, names).output), [1, 2, 3] * 4))
    assert all(output == alone[number] for number, output in outputs)


def test_the_page_hears_each_evaluation_of_step_7_without_a_line_of_its_code_changed(names):
    earlier: dict = {}
    heard = []
    with num_threads(torch.get_num_threads()), reporting_to(lambda n, done, total: heard.append((n, done, total))):
        seven = run_lesson(7, names, earlier)
    assert LESSONS[6].evaluates == ("model", "quantized") and "progress" not in LESSONS[6].code
    targets = len(names["corpus"].test[:60]) - 1
    assert [h for h in heard if h[1] == h[2]] == [(0, targets, targets), (1, targets, targets)]  # both, to the end
    assert [n for n, _, _ in heard] == sorted(n for n, _, _ in heard)  # float first, as the code evaluates them
    # The results are what the same code gives unheard, and nothing is heard outside the block.
    with num_threads(torch.get_num_threads()):
        again = run_lesson(7, names, earlier)
    assert [again.values["results"][m]["loss"] for m in ("float", "quantized")] == \
        [seven.values["results"][m]["loss"] for m in ("float", "quantized")]
    assert len(heard) == 2 * math.ceil(targets / 25)


def test_the_estimate_times_each_model_on_a_probe_and_scales_it_to_the_tokens(names, monkeypatch):
    timed = []

    def evaluate_at_2_ms_a_token(model, data, *, max_tokens=None):  # a clock that always reads the same
        tokens = min(len(data), max_tokens or len(data)) - 1
        timed.append((model, tokens))
        burst = 3 if len(timed) % 3 == 2 else 1  # each model's first timed try is slowed by other work
        return EvalResult(5.0, 148.4, tokens, 0.002 * tokens * burst, 500.0)

    monkeypatch.setattr(lessons, "evaluate", evaluate_at_2_ms_a_token)
    earlier: dict = {}
    arguments = lessons.lesson_arguments(7, {**names, "tokens": 60}, earlier)
    seconds = lessons.estimate_seconds(LESSONS[6], arguments, probe_tokens=30)
    assert list(seconds) == ["model", "quantized"]
    # 59 predictions of 60 tokens at the faster try's 2 ms each: the burst does not count.
    assert seconds == pytest.approx({"model": 0.002 * 59, "quantized": 0.002 * 59})
    # Each model: one chunk to warm it up, then two timed probes of 30 predictions (the faster one counts).
    model, quantized = names["model"], earlier[5]["quantized"]
    assert timed == [(model, 25), (model, 30), (model, 30), (quantized, 25), (quantized, 30), (quantized, 30)]
