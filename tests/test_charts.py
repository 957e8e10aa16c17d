import re

import numpy as np
import pandas as pd

from ui.charts import fidelity, generate, speed, style, word_html
from ui.charts import model as model_charts
from wlm.benchmark import benchmark_variants, thread_sweep, with_delta_loss
from wlm.fidelity import FidelityResult, output_fidelity, weight_histogram, weight_sqnr
from wlm.next_word import next_words_pair
from wlm.quantize import PRESETS, quantize
from wlm.sizes import size_by_part
from wlm.surprisal import surprisal_pair

from conftest import REPO, tiny_model


def _sizes(float_parts, quant_parts):
    rows = []
    for model, parts in (("float", float_parts), ("quantized", quant_parts)):
        total = sum(parts.values())
        rows += [{"model": model, "part": p, "bytes": b * 1e6, "mb": b, "share": b / total} for p, b in parts.items()]
    return pd.DataFrame(rows)


def _valid(figure: style.Figure) -> dict:
    spec = figure.chart.to_dict()  # Altair validates the spec against the Vega-Lite schema here
    assert figure.takeaway and figure.takeaway.endswith(".")
    return spec


def test_size_takeaway_names_the_float_embedding_share():
    sizes = _sizes({"embedding": 68.0, "lstm": 8.0, "decoder": 34.0}, {"embedding": 68.0, "lstm": 2.0, "decoder": 8.5})
    text = model_charts.size_takeaway(sizes)
    assert "78.5 MB vs 110.0 MB" in text
    assert "29 % smaller; float is 1.40× as big" in text  # 1 - 78.5 / 110, and 110 / 78.5
    assert "87 % of the quantized model" in text  # 68 / 78.5
    _valid(model_charts.size_chart(sizes))


def test_size_takeaway_when_the_embedding_is_quantized_or_nothing_is():
    sizes = _sizes({"embedding": 68.0, "lstm": 8.0, "decoder": 34.0}, {"embedding": 17.5, "lstm": 2.0, "decoder": 8.5})
    assert "from 68.0 MB to 17.5 MB" in model_charts.size_takeaway(sizes)
    same = _sizes({"embedding": 1.0, "lstm": 1.0, "decoder": 1.0}, {"embedding": 1.0, "lstm": 1.0, "decoder": 1.0})
    assert model_charts.size_takeaway(same).startswith("Nothing is quantized")


def test_size_chart_from_real_models_stacks_three_parts():
    model = tiny_model(300)
    sizes = size_by_part({"float": model, "quantized": quantize(model, PRESETS["tutorial"])})
    spec = _valid(model_charts.size_chart(sizes))
    assert spec["mark"]["type"] == "bar"
    assert "kB" in model_charts.size_chart(sizes).takeaway  # tiny models are shown in kB, not "0.0 MB"


def _table():
    return pd.DataFrame({"variant": ["fp32", "tutorial", "int8+emb4"], "size_mb": [110.0, 78.0, 20.0],
                         "loss": [5.0, 5.004, 5.05], "ppl": [148.4, 149.0, 156.0], "seconds": [4.0, 2.0, 2.2],
                         "tokens_per_s": [1000.0, 2000.0, 1800.0], "speedup": [1.0, 2.0, 1.8]})


def test_variant_charts_name_the_smallest_and_the_fastest():
    assert speed.variants_size_chart(_table()).takeaway == \
        "Smallest: int8+emb4 at 20.0 MB, 82 % less than float's 110.0 MB."
    assert speed.throughput_chart(_table()).takeaway == "Fastest: tutorial at 2,000 tokens/s, 2.00× float."
    slow = _table().assign(tokens_per_s=[3000.0, 2000.0, 1800.0])
    assert speed.throughput_chart(slow).takeaway.startswith("No variant beats float")
    _valid(speed.variants_size_chart(_table()))
    _valid(speed.throughput_chart(_table()))


def test_tradeoff_picks_the_smallest_variant_within_tolerance():
    table = with_delta_loss(_table())
    figure = fidelity.tradeoff_chart(table)
    _valid(figure)
    assert figure.takeaway.startswith("Pick tutorial: 78.0 MB")  # int8+emb4 costs 0.05 nats, over 0.01
    assert fidelity.tradeoff_takeaway(table, tolerance=0.1).startswith("Pick int8+emb4: 20.0 MB (18 % of float)")
    assert fidelity.tradeoff_takeaway(table, tolerance=0.001).startswith("Every variant costs more")


def test_thread_chart_reports_the_peak_and_its_gain():
    sweep = pd.DataFrame({"variant": ["fp32", "fp32", "tutorial", "tutorial"], "threads": [1, 2, 1, 2],
                          "tokens_per_s": [1000.0, 900.0, 2000.0, 3000.0], "seconds": [1, 1, 1, 1], "loss": [5] * 4})
    figure = speed.thread_chart(sweep)
    _valid(figure)
    assert "fp32 gains nothing from more threads (1,000 tokens/s)" in figure.takeaway
    assert "tutorial peaks at 2 threads (3,000 tokens/s, 1.50× its speed at 1)" in figure.takeaway
    # Threads that compete for busy cores can lose most of the speed: the takeaway says so, not "nothing".
    slower = sweep.assign(tokens_per_s=[1000.0, 250.0, 3000.0, 600.0])
    assert speed.thread_chart(slower).takeaway == (
        "fp32 is fastest at 1 thread (1,000 tokens/s) and slows down with more threads (250 at 2, 0.25×); tutorial "
        "is fastest at 1 thread (3,000 tokens/s) and slows down with more threads (600 at 2, 0.20×).")


def test_thread_chart_on_a_measured_sweep(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    sweep = thread_sweep(model, tiny_corpus.test, [PRESETS["fp32"]], [1, 2], max_tokens=40)
    spec = _valid(speed.thread_chart(sweep))
    rows = next(iter(spec["datasets"].values()))
    assert [r["threads"] for r in rows] == [1, 2]
    assert speed.thread_chart(sweep).takeaway.startswith("fp32 ")


def test_next_word_chart_says_whether_the_models_agree(trained_tiny):
    model, corpus = trained_tiny
    same = fidelity.next_word_chart(next_words_pair(model, model, corpus.dictionary, "the", 5))
    _valid(same)
    assert same.takeaway.startswith("Both models put") and "more than 0.0e+00" in same.takeaway
    other = tiny_model(len(corpus.dictionary), seed=7)
    table = next_words_pair(model, other, corpus.dictionary, "the", 5)
    first = table[table["rank"] == 1].set_index("model")["word"]
    text = fidelity.next_word_chart(table).takeaway
    assert text.startswith("The models disagree" if first["float"] != first["quantized"] else "Both models put")


def test_kl_chart_takeaway_counts_agreeing_tokens():
    kl = np.array([0.0, 1e-4, 1e-3, 0.5])
    result = FidelityResult(tokens=4, kl_mean=float(kl.mean()), kl_median=float(np.median(kl)), kl_p99=0.49,
                            kl_max=0.5, top1_agreement=0.75, loss_float=5.0, loss_quant=5.01, delta_loss=0.01, kl=kl)
    figure = fidelity.kl_chart(result)
    spec = _valid(figure)
    assert figure.takeaway.startswith("Top-1 agreement 75.0%: both models rank the same next word first in 3 of 4 "
                                      "predictions.")
    # The statistics the tab's metrics show, and no other: median and 99th percentile (and the worst).
    assert "median 0.00055 nats, 99th percentile 0.49, worst 0.5" in figure.takeaway
    assert "+0.0100" in figure.takeaway and "mean" not in figure.takeaway
    # The axis is labelled in nats at whole powers of ten, under a plain title.
    x = spec["encoding"]["x"]
    assert x["title"] == "KL divergence per prediction (nats, log scale)" and "log10" not in x["title"]
    assert x["axis"]["values"] == list(range(-9, 1))


def test_fidelity_charts_on_a_quantized_model(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    quant = quantize(model, PRESETS["tutorial"])
    result = output_fidelity(model, quant, tiny_corpus.test, max_tokens=50)
    _valid(fidelity.kl_chart(result))
    sqnr = weight_sqnr(model, quant)
    figure = fidelity.sqnr_chart(sqnr)
    _valid(figure)
    worst = sqnr.loc[sqnr["sqnr_db"].idxmin()]
    assert f"{worst['sqnr_db']:.1f} dB" in figure.takeaway
    hist = weight_histogram(model, quant, "rnn.weight_hh_l0")
    figure = fidelity.histogram_chart(hist)
    spec = _valid(figure)
    assert len(spec["layer"]) == 2  # bars and the grid's rules
    bars = spec["datasets"][spec["layer"][0]["data"]["name"]]
    # The browser gets the bins, not the weights: one row per bin, together every weight of the tensor.
    assert len(bars) == len(hist.bins) < model.rnn.weight_hh_l0.numel()
    assert sum(row["weights"] for row in bars) == model.rnn.weight_hh_l0.numel()
    assert f"Grid step {hist.scale:.2g}" in figure.takeaway
    assert fidelity.histogram_chart(hist, max_levels=3).takeaway.count("too dense") == 1


def test_histogram_without_a_grid_says_so():
    model = tiny_model(50)
    quant = quantize(model, PRESETS["float16"])
    figure = fidelity.histogram_chart(weight_histogram(model, quant, "decoder.weight"))
    _valid(figure)
    assert figure.takeaway.startswith("No single per-tensor grid")


def test_paired_html_escapes_words_breaks_lines_and_marks_the_divergence():
    html = word_html.paired_html(["<b>", "a", "<eos>", "b", "c"], first_difference=3)
    assert "&lt;b&gt;" in html and "<b>" not in html.replace("<br>", "")
    assert "a<br>" in html
    assert "<mark" in html and html.index("<mark") < html.index(">b<")
    assert "<mark" not in word_html.paired_html(["a", "b"], None)
    # Against the other text, only the words that differ after the first difference are tinted.
    tinted = word_html.paired_html(["a", "x", "b", "y"], 1, other=["a", "z", "b", "w"])
    assert tinted.count("dotted") == 1 and ">y<" in tinted and "dotted'>b<" not in tinted
    note = generate.generation_speed_note(1000, {"float": 3.5, "quantized": 1.0}, "tutorial")
    assert "float took 3.50 s (286 words/s)" in note and "tutorial 1.00 s (1,000 words/s)" in note
    assert note.endswith("3.5× the speed of float.")


def test_surprisal_html_and_takeaway(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    table = surprisal_pair(model, quant, corpus.dictionary, "the zebra <script> cat")
    html = word_html.surprisal_html(table)
    assert "&lt;script&gt;?" in html and "<script>" not in html
    assert html.count("dashed") == 1  # one unknown word, outlined once
    text = word_html.surprisal_takeaway(table)
    known = table[~table["unknown"]]
    worst = known.loc[known["loss_float"].idxmax()]
    assert f"{worst['word']!r} ({worst['loss_float']:.1f} nats float" in text
    assert "1 unknown word (outlined)" in text


def test_measured_variant_table_feeds_both_charts(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    table = benchmark_variants(model, tiny_corpus.test, ["tutorial", "int8+emb4"], max_tokens=40)
    for builder in (speed.variants_size_chart, speed.throughput_chart):
        _valid(builder(table))
    assert "int8+emb4" in speed.variants_size_chart(table).takeaway




def test_same_pick_chart_marks_where_the_texts_part():
    from wlm.generate import Agreement

    parted = Agreement(first_difference=23, agreed_words=23, same_pick=[0.98] * 23 + [0.72],
                       mean_same_pick=(0.98 * 23 + 0.72) / 24)
    figure = generate.same_pick_chart(parted)
    spec = _valid(figure)
    assert figure.takeaway.startswith("The texts agree for 23 words and part at word 24;")
    assert "pick the same word 96.9 % of the time" in figure.takeaway and "once in 32 words" in figure.takeaway
    rule = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rule")
    assert spec["datasets"][rule["data"]["name"]] == [{"word": 24}]
    together = Agreement(None, 100, [1.0] * 100, 1.0)
    assert not any(layer["mark"]["type"] == "rule" for layer in _valid(generate.same_pick_chart(together))["layer"])
    assert generate.same_pick_takeaway(together) == ("The texts agree on all 100 words; at each step the two models "
                                                   "would pick the same word 100.0 % of the time.")
    assert generate.same_pick_takeaway(Agreement(0, 0, [0.5], 0.5)).startswith("The texts part at the first word")
    assert generate.same_pick_takeaway(Agreement(0, 0, [0.97], 0.97)).startswith(
        "The texts part at the first word, although there the two models would pick the same word 97.0 %")
    assert "same tickets" in generate.TICKETS_EXPLAINED


def test_same_pick_takeaway_reads_right_near_certainty_and_when_greedy():
    from wlm.generate import Agreement

    # float16: odds a millionth short of certain neither read as 100 % nor stretch the chart's axis.
    close = Agreement(None, 100, [1 - 1e-6] * 100, 1 - 1e-6)
    assert "the same word 99.9999 % of the time." in generate.same_pick_takeaway(close)
    assert _valid(generate.same_pick_chart(close))["layer"][0]["encoding"]["y"]["scale"]["domain"] == [0.9, 1]
    # Greedy picks have no odds: the texts part exactly where the most likely words first differ.
    greedy = Agreement(7, 7, [1.0] * 7 + [0.0], 7 / 8)
    text = generate.same_pick_takeaway(greedy, temperature=0.0)
    assert text.startswith("At temperature 0 each model writes its most likely word: the texts agree for 7 words "
                           "and part at word 8") and "%" not in text
    assert generate.same_pick_chart(greedy, temperature=0.0).takeaway == text
    assert "never part" in generate.same_pick_takeaway(Agreement(None, 50, [1.0] * 50, 1.0), temperature=0.0)
    assert "already for the first word" in generate.same_pick_takeaway(Agreement(0, 0, [0.0], 0.0), temperature=0.0)


def test_colours_are_named_once_and_the_core_draws_nothing():
    """The palette lives in style.py, so a colour changes in one place; wlm returns numbers and tables and
    leaves drawing them to ui/."""
    for path in (REPO / "ui" / "charts").glob("*.py"):
        if path.name != "style.py":
            assert not re.search(r"#[0-9a-fA-F]{3,6}\b", path.read_text()), path.name
    for path in (REPO / "wlm").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+(altair|streamlit)\b", path.read_text(), re.M), path.name


def _colours(spec: dict) -> dict:
    """{variant: colour} of every colour scale in a chart's spec (its layers' too)."""
    found = {}
    for part in [spec, *spec.get("layer", [])]:
        for channel in ("color", "fill"):
            scale = part.get("encoding", {}).get(channel, {}).get("scale")
            if isinstance(scale, dict) and "domain" in scale:
                for variant, colour in zip(scale["domain"], scale["range"]):
                    assert found.setdefault(variant, colour) == colour, (variant, colour)
    return found


def _engine_table():
    from wlm.benchmark import engine_labels

    table = pd.DataFrame({"variant": ["fp32", "tutorial", "fp32", "int8"],
                          "engine": ["torch", "torch", "onnxruntime", "onnxruntime"],
                          "size_mb": [110.0, 78.0, 110.0, 28.0], "loss": [5.0, 5.004, 5.0, 5.01],
                          "ppl": [148.4, 149.0, 148.4, 150.0], "seconds": [4.0, 2.0, 3.0, 1.0],
                          "tokens_per_s": [1000.0, 2000.0, 1300.0, 4000.0], "speedup": [1.0, 2.0, 1.3, 4.0]})
    return engine_labels(table)


def test_one_colour_per_variant_and_engine_in_every_chart():
    """The tutorial's variant is the same orange in the bars, the thread lines, the trade-off and the KL histogram;
    ONNX Runtime's float export is not quantized's orange; the float family is blue."""
    sweep = pd.DataFrame({"variant": ["fp32", "fp32", "tutorial", "tutorial"], "threads": [1, 2, 1, 2],
                          "tokens_per_s": [1000.0, 900.0, 2000.0, 3000.0], "seconds": [1] * 4, "loss": [5] * 4})
    bars = _colours(_valid(speed.variants_size_chart(_engine_table())))
    speeds = _colours(_valid(speed.throughput_chart(_engine_table())))
    threads = _colours(_valid(speed.thread_chart(sweep)))
    trade = _colours(_valid(fidelity.tradeoff_chart(with_delta_loss(_table()))))
    assert bars == speeds
    for variant in ("fp32", "tutorial"):
        assert bars[variant] == threads[variant] == trade[variant] == style.VARIANT_COLORS[variant]
    assert trade["int8+emb4"] == style.VARIANT_COLORS["int8+emb4"]
    assert bars["fp32"] == style.FLOAT and bars["tutorial"] == style.QUANTIZED
    assert bars["onnxruntime fp32"] not in (style.QUANTIZED, style.FLOAT, bars["onnxruntime int8"])
    kl = np.array([1e-4, 1e-3])
    result = FidelityResult(tokens=2, kl_mean=float(kl.mean()), kl_median=float(np.median(kl)), kl_p99=1e-3,
                            kl_max=1e-3, top1_agreement=1.0, loss_float=5.0, loss_quant=5.0, delta_loss=0.0, kl=kl)
    assert _valid(fidelity.kl_chart(result, "tutorial"))["mark"]["color"] == style.VARIANT_COLORS["tutorial"]
    assert _valid(fidelity.kl_chart(result, "onnxruntime int8"))["mark"]["color"] == bars["onnxruntime int8"]
    # Every preset and engine has a colour of its own; a sidebar spec that is no preset takes its family's.
    colours = list(style.VARIANT_COLORS.values())
    assert len(set(colours)) == len(colours) and set(PRESETS) <= set(style.VARIANT_COLORS)
    assert style.variant_color("lstm qint8") not in colours and style.variant_color("lstm float16") not in colours


def test_blue_and_orange_mean_float_and_quantized_only():
    """Parts of a model and gates of a weight are drawn in colours no variant has."""
    model = tiny_model(300)
    sizes = size_by_part({"float": model, "quantized": quantize(model, PRESETS["tutorial"])})
    parts = _valid(model_charts.size_chart(sizes))["encoding"]["color"]["scale"]["range"]
    sqnr = _valid(fidelity.sqnr_chart(weight_sqnr(model, quantize(model, PRESETS["tutorial"]))))
    gates = sqnr["encoding"]["color"]["scale"]["range"]
    assert not set(parts + gates) & set(style.VARIANT_COLORS.values())


def test_the_trade_off_shows_every_point_and_a_legend_that_fits():
    """fp32 and float16 land on one spot: fp32 is the one filled shape, drawn first, every other an outline on top,
    and both names stand beside the spot, one above the other. The tokens/s legend is one row under the plot
    (a legend on the right was cut off at 1280 and 390 px), marked at the slowest and fastest measured."""
    table = _table().assign(loss=[5.0, 5.03, 5.05])  # tutorial's point well below int8+emb4's, far from float's
    table = pd.concat([table, table.iloc[[0]].assign(variant="float16", tokens_per_s=1500.0, speedup=1.5,
                                                     size_mb=110.002, loss=5.0 - 1e-8)], ignore_index=True)
    table = with_delta_loss(table)
    figure = fidelity.tradeoff_chart(table)
    spec = _valid(figure)
    points, *labels = spec["layer"]
    assert points["mark"]["type"] == "point" and all(layer["mark"]["type"] == "text" for layer in labels)
    legend = points["encoding"]["size"]["legend"]
    assert legend["orient"] == "bottom" and legend["direction"] == "horizontal"
    assert legend["values"] == [1000, 2000] and points["encoding"]["size"]["title"] == "tokens/s"
    for channel in ("color", "shape"):
        assert points["encoding"][channel]["legend"] is None  # the names stand beside the points
    assert points["encoding"]["order"]["field"] == "draw"
    rows = {r["variant"]: r for r in spec["datasets"][spec["data"]["name"]]}  # the layers share one data set
    assert rows["fp32"]["draw"] < min(r["draw"] for v, r in rows.items() if v != "fp32")  # drawn first, under
    assert "fp32" in points["encoding"]["fillOpacity"]["condition"]["test"]
    places = fidelity.label_places(table).set_index("variant")
    assert places.loc["fp32", "side"] == places.loc["float16", "side"] == "left"  # at the right edge
    assert sorted(places.loc[["fp32", "float16"], "slot"]) == [0, 1]  # stacked
    assert places.loc["int8+emb4", "stack"] == 1 and places.loc["int8+emb4", "side"] == "right"
    dys = sorted(layer["mark"]["dy"] for layer in labels if layer["mark"]["align"] == "right"
                 and "stack === 2" in layer["transform"][0]["filter"])
    assert dys[1] - dys[0] >= 14  # two lines of 14 px names apart
    assert figure.takeaway.endswith("float16 lands on float's point (float16: 110.0 MB against 110.0 MB, Δ loss "
                                    "-1e-08): its outline is drawn over fp32's filled one.")
    assert "lands on" not in fidelity.tradeoff_chart(with_delta_loss(_table())).takeaway
    titles = (points["encoding"]["x"]["title"], points["encoding"]["y"]["title"])
    assert titles == ("size (MB)", "Δ loss vs float, lower is better")


def test_axes_and_tooltips_use_the_one_plain_name_of_each_column():
    from ui import glossary

    size_spec = _valid(speed.variants_size_chart(_table()))
    speed_spec = _valid(speed.throughput_chart(_table()))
    assert size_spec["encoding"]["x"]["title"] == glossary.name("size_mb") == "size (MB)"
    assert speed_spec["encoding"]["x"]["title"] == glossary.name("tokens_per_s") == "tokens/s"
    tips = {t["field"]: t["title"] for t in size_spec["encoding"]["tooltip"] + speed_spec["encoding"]["tooltip"]}
    assert tips == {"variant": "variant", "size_mb": "size (MB)", "loss": "loss", "ppl": "perplexity",
                    "tokens_per_s": "tokens/s", "speedup": "speedup", "seconds": "seconds"}


def test_the_next_words_are_rows_so_a_phone_keeps_every_label(trained_tiny):
    model, corpus = trained_tiny
    table = next_words_pair(model, model, corpus.dictionary, "the", 8)
    spec = fidelity.next_word_chart(table).chart.to_dict()
    spec = spec.get("layer", [spec])[0] if "encoding" not in spec else spec
    assert spec["encoding"]["y"]["field"] == "word" and spec["encoding"]["x"]["field"] == "prob"
    assert spec["height"] >= 30 * table["word"].nunique()  # a row for each word, however many are asked for
