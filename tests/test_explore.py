import math

import pytest
import torch

from conftest import tiny_model
from wlm.compare import compare_variants
from wlm.corpus import EOS, UNK, Dictionary
from wlm.errors import WlmError
from wlm.evaluate import evaluate
from wlm.explore import (compare_next_words, part_table, size_by_part, surprisal_pair, text_to_words,
                         thread_sweep, tokens_for_seconds, top_next_words, with_delta_loss, word_surprisal)
from wlm.quantize import PRESETS, module_sizes, quantize, weights_per_part


def test_size_by_part_matches_module_sizes_and_shows_what_quantizing_shrinks():
    model = tiny_model(200)
    quant = quantize(model, PRESETS["tutorial"])
    table = size_by_part({"float": model, "quantized": quant})
    sizes = table.pivot(index="part", columns="model", values="bytes")
    assert sizes["float"].to_dict() == module_sizes(model)
    assert sizes.loc["embedding", "quantized"] == sizes.loc["embedding", "float"]  # tutorial leaves it in float
    assert sizes.loc["decoder", "quantized"] < sizes.loc["decoder", "float"] / 2
    assert table.groupby("model")["share"].sum().round(9).eq(1).all()
    with_emb = size_by_part({"q": quantize(model, PRESETS["int8+emb8"])}).set_index("part")
    assert with_emb.loc["embedding", "bytes"] < sizes.loc["embedding", "float"] / 2


def test_part_table_lists_weights_sizes_and_storage_with_a_total():
    model = tiny_model(200)
    spec = PRESETS["int8+emb4"]
    quant = quantize(model, spec)
    table = part_table(size_by_part({"float": model, "quantized": quant}), weights_per_part(model), spec)
    assert list(table.index) == ["embedding", "lstm", "decoder", "total"]
    assert table.loc["total", "weights"] == sum(p.numel() for p in model.parameters())
    assert table.loc["total", "float_mb"] == pytest.approx(table["float_mb"].iloc[:3].sum())
    assert table.loc["embedding", "quantized_mb"] < table.loc["embedding", "float_mb"] / 3  # 4 bits of 32, plus scales
    assert table.loc["embedding", "quantized_storage"].startswith("4-bit")


def test_top_next_words_are_the_models_most_likely_after_the_prompt(trained_tiny):
    model, corpus = trained_tiny
    table = top_next_words(model, corpus.dictionary, "the cat sat on the", k=4)
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert table["prob"].is_monotonic_decreasing
    ids = torch.tensor([corpus.dictionary.word2idx[w] for w in "the cat sat on the".split()]).view(-1, 1)
    logits, _ = model(ids, model.init_hidden(1))
    expected = torch.topk(torch.softmax(logits[-1, 0].double(), -1), 4)
    assert list(table["word"]) == [corpus.dictionary.idx2word[i] for i in expected.indices.tolist()]
    assert table["prob"].tolist() == pytest.approx(expected.values.tolist(), rel=1e-6)
    # The prompt matters: another context gives other odds.
    assert not table["prob"].equals(top_next_words(model, corpus.dictionary, "a dog", k=4)["prob"])


def test_top_next_words_empty_prompt_starts_after_a_line_break(trained_tiny):
    model, corpus = trained_tiny
    empty = top_next_words(model, corpus.dictionary, "", k=3)
    eos = top_next_words(model, corpus.dictionary, EOS, k=3)
    assert empty.equals(eos)
    with pytest.raises(WlmError, match="at least 1"):
        top_next_words(model, corpus.dictionary, "the", k=0)


def test_compare_next_words_identical_models_agree_and_a_different_one_does_not(trained_tiny):
    model, corpus = trained_tiny
    same = compare_next_words(model, model, corpus.dictionary, "the dog", k=5)
    wide = same.pivot(index="word", columns="model", values="prob")
    assert (wide["float"] == wide["quantized"]).all()
    assert len(wide) == 5
    other = tiny_model(len(corpus.dictionary), seed=3)
    mixed = compare_next_words(model, other, corpus.dictionary, "the dog", k=5)
    words = set(mixed["word"])
    assert set(top_next_words(model, corpus.dictionary, "the dog", 5)["word"]) <= words
    assert set(top_next_words(other, corpus.dictionary, "the dog", 5)["word"]) <= words
    # Rows are in the float model's order.
    order = mixed[mixed["model"] == "float"]["prob"]
    assert order.is_monotonic_decreasing


def test_text_to_words_turns_line_breaks_into_eos():
    assert text_to_words("a b\n c \n\nd") == ["a", "b", EOS, "c", EOS, EOS, "d"]
    assert text_to_words("  \n ") == []


def test_word_surprisal_mean_is_the_evaluation_loss(trained_tiny):
    model, corpus = trained_tiny
    text = "the cat sat on the mat\nthe dog ran on the log"
    table = word_surprisal(model, corpus.dictionary, text)
    words = text_to_words(text)
    assert list(table["word"]) == words and not table["unknown"].any()
    ids = torch.tensor([corpus.dictionary.word2idx[w] for w in [EOS] + words])
    # The same tokens through the tutorial's evaluation (chunks of 25, hidden carried) give the same mean loss.
    assert table["loss"].mean() == pytest.approx(evaluate(model, ids, bptt=5).loss, rel=1e-5)
    assert (table["loss"] > 0).all()


def test_word_surprisal_flags_unknown_words():
    dictionary = Dictionary([EOS, UNK, "the", "cat"])
    model = tiny_model(len(dictionary))
    table = word_surprisal(model, dictionary, "the zebra cat")
    assert list(table["unknown"]) == [False, True, False]
    assert table["loss"].notna().all()  # scored as <unk>
    no_unk = Dictionary([EOS, "the", "cat"])
    table = word_surprisal(tiny_model(len(no_unk)), no_unk, "the zebra cat")
    assert list(table["unknown"]) == [False, True, False]
    assert math.isnan(table["loss"][1]) and not math.isnan(table["loss"][2])
    with pytest.raises(WlmError, match="at least one word"):
        word_surprisal(model, dictionary, "   ")


def test_surprisal_pair_of_a_model_with_itself_has_zero_delta(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    same = surprisal_pair(model, model, corpus.dictionary, "the cat ran")
    assert (same["delta"] == 0).all()
    pair = surprisal_pair(model, quant, corpus.dictionary, "the cat ran")
    assert pair["loss_quant"].tolist() == word_surprisal(quant, corpus.dictionary, "the cat ran")["loss"].tolist()
    assert (pair["delta"] != 0).any()


def test_thread_sweep_one_row_per_variant_and_thread_with_the_same_loss(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    sweep = thread_sweep(model, tiny_corpus.test, [PRESETS["fp32"], PRESETS["tutorial"]], [1, 2], max_tokens=60)
    assert list(sweep["variant"]) == ["fp32", "fp32", "tutorial", "tutorial"]
    assert list(sweep["threads"]) == [1, 2, 1, 2]
    assert (sweep["tokens_per_s"] > 0).all()
    for _, group in sweep.groupby("variant"):
        assert group["loss"].max() - group["loss"].min() < 1e-5  # threads change speed, not results
    assert sweep.loc[0, "loss"] == pytest.approx(evaluate(model, tiny_corpus.test, max_tokens=60).loss, rel=1e-6)
    assert sweep.loc[0, "loss"] != sweep.loc[2, "loss"]


def test_tokens_for_seconds_scales_with_the_budget(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    ids = tiny_corpus.train
    small = tokens_for_seconds(model, ids, 0.0001, step=10)
    large = tokens_for_seconds(model, ids, 1000.0, step=10)
    assert small == 10  # never below one step
    assert large == len(ids) // 10 * 10  # never more than the split holds
    assert large % 10 == 0


def test_with_delta_loss_is_relative_to_float(tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary))
    table = with_delta_loss(compare_variants(model, tiny_corpus.test, ["tutorial"], max_tokens=50))
    assert table.loc[0, "delta_loss"] == 0
    assert table.loc[1, "delta_loss"] == pytest.approx(table.loc[1, "loss"] - table.loc[0, "loss"])
