import math

import pytest
import torch
from torch import nn

from wlm.corpus import batchify
from wlm.errors import WlmError
from wlm.evaluate import evaluate

from conftest import tiny_model


def tutorial_loss(model, data, bptt=25):
    """The tutorial's loop written out: batch 1, hidden carried, chunk losses weighted by chunk length."""
    source = batchify(data, 1)
    hidden = model.init_hidden(1)
    total = 0.0
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            seq_len = min(bptt, len(source) - 1 - i)
            x, y = source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)
            out, hidden = model(x, hidden)
            total += len(x) * nn.CrossEntropyLoss()(out.view(-1, out.size(-1)), y).item()
    return total / (len(source) - 1)


def test_matches_tutorial_loop(trained_tiny):
    model, corpus = trained_tiny
    result = evaluate(model, corpus.test)
    assert result.loss == pytest.approx(tutorial_loss(model, corpus.test), rel=1e-9)
    assert result.perplexity == pytest.approx(math.exp(result.loss))
    assert result.tokens == len(corpus.test) - 1
    assert result.tokens_per_s > 0 and result.note == ""


def test_max_tokens_prefix_and_clamp(trained_tiny):
    model, corpus = trained_tiny
    part = evaluate(model, corpus.test, max_tokens=60)
    assert part.tokens == 59
    assert part.loss == pytest.approx(tutorial_loss(model, corpus.test[:60]))
    clamped = evaluate(model, corpus.test, max_tokens=10**9)
    assert clamped.tokens == len(corpus.test) - 1
    assert "more than the split" in clamped.note
    with pytest.raises(WlmError, match="max_tokens"):
        evaluate(model, corpus.test, max_tokens=1)


def test_batch_size_and_progress(trained_tiny):
    model, corpus = trained_tiny
    seen = []
    result = evaluate(model, corpus.test, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == result.tokens
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:]))



def test_quantized_model_init_hidden():
    from wlm.quantize import PRESETS, quantize

    q = quantize(tiny_model(40), PRESETS["int8+emb8"])
    h, c = q.init_hidden(3)
    assert h.dtype == torch.float32 and h.shape == (2, 3, 24)
