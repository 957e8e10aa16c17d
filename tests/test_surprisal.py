import math

import pytest
import torch

from wlm.corpus import EOS, UNK, Dictionary
from wlm.errors import WlmError
from wlm.evaluate import evaluate
from wlm.quantize import PRESETS, quantize
from wlm.surprisal import surprisal_pair, text_to_words, word_surprisal

from conftest import tiny_model


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


def test_surprisal_pair_reads_both_models_at_once_and_gives_each_ones_own_losses(trained_tiny):
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])
    text = "the cat sat on the mat\nthe dog ran on the log " * 30  # several chunks of READ_CHUNK words
    threads = torch.get_num_threads()
    pair = surprisal_pair(model, quant, corpus.dictionary, text)
    assert torch.get_num_threads() == threads  # the quantized model's thread reads at the caller's count
    assert pair["loss_float"].tolist() == word_surprisal(model, corpus.dictionary, text)["loss"].tolist()
    assert pair["loss_quant"].tolist() == word_surprisal(quant, corpus.dictionary, text)["loss"].tolist()
    with pytest.raises(WlmError, match="at least one word"):
        surprisal_pair(model, quant, corpus.dictionary, "\n ")


def _table(deltas, unknown=()):
    import pandas as pd

    n = len(deltas)
    loss_float = [1.0 + i for i in range(n)]
    loss_quant = [f + d for f, d in zip(loss_float, deltas)]
    return pd.DataFrame({"position": range(n), "word": [f"w{i}" for i in range(n)],
                         "unknown": [i in unknown for i in range(n)], "loss_float": loss_float,
                         "loss_quant": loss_quant, "delta": [q - f for f, q in zip(loss_float, loss_quant)]})


def test_most_changed_ranks_by_the_size_of_the_change_earlier_words_first_on_ties():
    from wlm.surprisal import most_changed

    table = _table([0.1, -0.5, 0.5, float("nan"), 0.2, -0.05])
    top = most_changed(table, 3)
    assert top["position"].tolist() == [1, 2, 4]
    assert top["delta"].tolist() == pytest.approx([-0.5, 0.5, 0.2])
    assert len(most_changed(table, 50)) == 5  # the word without a loss is never listed


def test_surprise_along_is_each_runs_mean_loss():
    from wlm.surprisal import surprise_along

    table = _table([0.0] * 9 + [1.0])
    table.loc[3, ["loss_float", "loss_quant", "delta"]] = float("nan")  # a word without a loss is left out
    along = surprise_along(table, 4)  # 10 words in runs of 3: 3, 3, 3, 1
    assert along["words"].tolist() == [3, 3, 3, 1]
    assert along["first"].tolist() == [0, 3, 6, 9] and along["last"].tolist() == [2, 5, 8, 9]
    assert along["loss_float"].tolist() == pytest.approx([2.0, 5.5, 8.0, 10.0])
    assert along["loss_quant"].tolist() == pytest.approx([2.0, 5.5, 8.0, 11.0])
    assert along["delta"].tolist() == pytest.approx([0, 0, 0, 1.0])
    assert len(surprise_along(table, 100)) == 10  # never more runs than words
    with pytest.raises(ValueError):
        surprise_along(table, 0)
