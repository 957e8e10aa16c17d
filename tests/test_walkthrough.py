"""The walkthrough's lessons: each lesson's code, run exactly as the page shows it on the tiny bundle and corpus,
prints and leaves behind the numbers the card displays, and they match what wlm measures on its own."""
import contextlib
import io

import pytest
import torch

from wlm.checkpoint import load_model
from wlm.evaluate import evaluate
from wlm.generate import generate
from wlm.quantize import PRESETS, quantize
from wlm.sizes import module_sizes, state_dict_bytes
from wlm.threads import num_threads
from wlm.walkthrough import LESSONS, TUTORIAL, changed_parts, marked_architecture, run_lesson, size_table, speed_table


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
