"""The Fidelity tab, value by value: every number it shows (top-1 agreement, mean and p99 KL, Δ loss, the KL
histogram, the SQNR per weight and gate, one weight's histogram and grid, the per-word surprise, the trade-off across
presets, the next-word bars) against the same figure worked out here with plain torch on the tiny bundle, and
torch's own quantize_dynamic for the quantized model."""
import io
import re

import numpy as np
import pytest
import torch
from torch import nn

from ui.glossary import HELP
from wlm.quantize import PRESETS, quantize

from apptest import assert_clean, chart_data, run_app, takeaways
from conftest import tutorial_int8, tutorial_loss

FIDELITY = 3
TOKENS = 60  # of the tiny test split's 80


def _tab(at):
    tab = at.tabs[FIDELITY]
    assert tab.label == "Fidelity"
    return tab


def _chart(tab, columns: set):
    """The data sets of the one chart whose first data set has ``columns``."""
    (found,) = [data for data in map(chart_data, tab.get("vega_lite_chart")) if set(data[0].columns) == columns]
    return found


def _said(tab, start: str) -> str:
    (text,) = [t for t in takeaways(tab) if t.startswith(f"**Takeaway:** {start}")]
    return text


@torch.no_grad()
def _log_probs(model: nn.Module, ids: torch.Tensor, bptt: int = 25) -> torch.Tensor:
    """Next-word log-probabilities at every position, the tutorial's way (batch 1, bptt chunks, state carried)."""
    hidden, out = model.init_hidden(1), []
    for i in range(0, len(ids) - 1, bptt):
        inputs = ids[i:min(i + bptt, len(ids) - 1)]
        logits, hidden = model(inputs.view(-1, 1), hidden)
        out.append(torch.log_softmax(logits.view(len(inputs), -1).double(), -1))
    return torch.cat(out)


@pytest.fixture
def opened(app_env):
    at = run_app({"tab": "fidelity"})
    assert_clean(at)
    return at, app_env["model"], tutorial_int8(app_env["model"]), app_env["corpus"]


def test_output_agreement_shows_the_kl_top1_and_loss_change_of_the_two_models(opened):
    at, model, quant, corpus = opened
    at.slider(key="fid_tokens").set_value(TOKENS).run()
    at.button(key="kl_go").click().run()
    assert_clean(at)
    tab = _tab(at)
    ids = corpus.test[:TOKENS]
    lf, lq = _log_probs(model, ids), _log_probs(quant, ids)
    kl = (lf.exp() * (lf - lq)).sum(-1).clamp_min(0).numpy()
    agree = int((lf.argmax(-1) == lq.argmax(-1)).sum())
    n = len(ids) - 1
    targets = ids[1:].view(-1, 1)
    delta = float(-lq.gather(1, targets).mean() + lf.gather(1, targets).mean())
    assert len(kl) == n == 59
    p99 = np.percentile(kl, 99)
    assert {m.label: m.value for m in tab.metric} == {
        "Same likeliest next word": f"{agree / n:.1%}", "Median KL": f"{np.median(kl):.2g} nats",
        "99th-percentile KL": f"{p99:.2g} nats", "Loss change": f"{delta:+.4f} nats"}
    # Each metric explains its terms; the glossary's texts, from the one place they are written.
    helps = {m.label: m.proto.help for m in tab.metric}
    assert HELP["top-1 agreement"] in helps["Same likeliest next word"]
    assert HELP["median"] in helps["Median KL"] and HELP["p99"] in helps["99th-percentile KL"]
    assert all(HELP["KL divergence (nats)"] in helps[k] for k in ("Median KL", "99th-percentile KL"))
    assert helps["Loss change"] == HELP["Δ loss"]
    (shown,) = _chart(tab, {"log10_kl"})
    assert shown["log10_kl"].to_numpy() == pytest.approx(np.log10(np.maximum(kl, 1e-9)), abs=1e-6)
    # The takeaway quotes the statistics the metrics show (median and 99th percentile), and the worst.
    assert _said(tab, "Top-1") == (f"**Takeaway:** Top-1 agreement {agree / n:.1%}: both models rank the same next "
                                   f"word first in {agree:,} of {n:,} predictions. KL divergence: median "
                                   f"{np.median(kl):.2g} nats, 99th percentile {p99:.2g}, worst {kl.max():.2g}; the "
                                   f"loss changes by {delta:+.4f}.")
    assert f"{TOKENS} tokens ({TOKENS - 1} predictions)" in " ".join(c.value for c in tab.caption)


def _torch_weights(quant: nn.Module) -> dict[str, torch.Tensor]:
    """The int8 weights torch's quantized model computes with, by the float model's names."""
    return {**{f"rnn.{k}": v for k, v in quant.rnn.get_weight().items()}, "decoder.weight": quant.decoder.weight()}


def _sqnr(w: torch.Tensor, approx: torch.Tensor) -> float:
    w, approx = w.double(), approx.double()
    return float(20 * torch.log10(w.norm() / (w - approx).norm()))


def test_weights_show_each_weights_sqnr_per_gate_and_a_histogram_on_its_grid(opened):
    at, model, quant, _ = opened
    at.button(key="sqnr_go").click().run()
    assert_clean(at)
    tab = _tab(at)
    floats = model.state_dict()
    expected = []
    for name, q in _torch_weights(quant).items():
        w, wq = floats[name], q.dequantize()
        part, short = ("lstm", name[4:]) if name.startswith("rnn.") else ("decoder", "weight")
        expected.append((part, short, "all", _sqnr(w, wq)))
        if part == "lstm":  # PyTorch's four gate blocks, in its order
            expected += [(part, short, g, _sqnr(a, b)) for g, a, b in zip("ifgo", w.chunk(4), wq.chunk(4))]
    (shown,) = _chart(tab, {"part", "weight", "layer", "gate", "sqnr_db", "what"})
    rows = [(r.part, r.weight, r.gate, r.sqnr_db) for r in shown.itertuples()]
    assert [r[:3] for r in rows] == [e[:3] for e in expected]
    assert [r[3] for r in rows] == pytest.approx([e[3] for e in expected], rel=1e-9)
    worst = min(expected, key=lambda e: e[3])
    median = float(np.median([e[3] for e in expected if e[2] == "all"]))
    where = worst[1] + ("" if worst[2] == "all" else f" gate {worst[2]}") if worst[0] == "lstm" else \
        f"the {worst[0]}'s {worst[1]}"
    assert _said(tab, "Weakest") == (f"**Takeaway:** Weakest: {where} at {worst[3]:.1f} dB; the median weight keeps "
                                     f"{median:.1f} dB (each 6 dB is about one bit of precision).")
    names = list(_torch_weights(quant))
    assert at.selectbox(key="hist_name").options == names and at.selectbox(key="hist_name").value == names[0]
    for name in (names[0], "decoder.weight"):
        at.selectbox(key="hist_name").set_value(name).run()
        tab = _tab(at)
        w, q = floats[name].float(), _torch_weights(quant)[name]
        bars, levels = _chart(tab, {"start", "end", "weights"})
        counts, edges = np.histogram(w.numpy().reshape(-1), bins=80)
        assert bars["weights"].tolist() == counts.tolist() and bars["start"].to_numpy() == pytest.approx(edges[:-1])
        scale, zero = q.q_scale(), q.q_zero_point()
        grid = [(k - zero) * scale for k in range(-128, 128)
                if float(w.min()) - scale <= (k - zero) * scale <= float(w.max()) + scale]
        assert levels["level"].to_numpy() == pytest.approx(grid, rel=1e-6)
        error = float((q.dequantize() - w).abs().max())
        assert _said(tab, "Grid step") == (f"**Takeaway:** Grid step {scale:.2g}: the weights use {len(grid)} of 256 "
                                           f"int8 levels; the largest rounding error is {error:.2g} "
                                           f"({error / scale:.2f} of a step).")


@torch.no_grad()
def _surprise(model: nn.Module, dictionary, words: list[str]) -> list[float]:
    """-log p(word | the words before it), the first word after a line break."""
    ids = [dictionary.word2idx[w] for w in words]
    logits, _ = model(torch.tensor([dictionary.word2idx["<eos>"]] + ids[:-1]).view(-1, 1), model.init_hidden(1))
    picked = torch.log_softmax(logits.view(len(ids), -1), -1).gather(1, torch.tensor(ids).view(-1, 1))
    return (-picked).view(-1).tolist()


def test_the_surprise_of_each_word_is_each_models_loss_on_it(opened):
    at, model, quant, corpus = opened
    text = "the dog sat on the log and a cat ran"
    at.text_area(key="sur_text").set_value(text).run()
    assert_clean(at)
    tab = _tab(at)
    words = text.split()
    (html,) = [m.value for m in tab.markdown if "<i>float</i>" in m.value]
    # One block a word, both models' losses in its tooltip, the word on top.
    shown = re.findall(r"<span title='float ([\d.]+) nats, quantized ([\d.]+) nats[^']*' [^>]*><span [^>]*>([^<]+)<",
                       html)
    assert [w for *_, w in shown] == words
    for i, m in enumerate((model, quant)):
        assert [float(s[i]) for s in shown] == pytest.approx(_surprise(m, corpus.dictionary, words), abs=0.00051)
    lf, lq = _surprise(model, corpus.dictionary, words), _surprise(quant, corpus.dictionary, words)
    worst = int(np.argmax(lf))
    assert _said(tab, "Most surprising") == (
        f"**Takeaway:** Most surprising: {words[worst]!r} ({lf[worst]:.1f} nats float, {lq[worst]:.1f} quantized); "
        f"on average quantizing changes a word's loss by {np.mean(np.subtract(lq, lf)):+.3f} nats. Darker = more "
        "surprised (per-word loss).")


def test_the_trade_off_measures_every_presets_size_and_loss(opened):
    at, model, _, corpus = opened
    at.button(key="trade_go").click().run()
    assert_clean(at)
    tab = _tab(at)
    tokens = min(1000, len(corpus.test))  # the Speed & accuracy slider's default, untouched here
    assert f"Every preset on {tokens:,} test tokens" in " ".join(c.value for c in tab.caption)
    measured = {"variant", "size_mb", "loss", "ppl", "seconds", "tokens_per_s", "speedup", "delta_loss"}
    # The trade-off's data is the measured table, with where each name is drawn (``fidelity.label_places``).
    (shown,) = _chart(tab, measured | {"side", "slot", "stack", "draw"})
    assert list(shown["variant"]) == list(PRESETS)
    ids = corpus.test[:tokens]
    sizes, losses = [], []
    for name in PRESETS:
        variant = quantize(model, PRESETS[name])
        buffer = io.BytesIO()
        torch.save(variant.state_dict(), buffer)
        sizes.append(buffer.tell() / 1e6)
        losses.append(tutorial_loss(variant, ids))
    assert shown["size_mb"].tolist() == pytest.approx(sizes, rel=1e-9)
    assert shown["loss"].tolist() == pytest.approx(losses, abs=1e-5)
    deltas = [loss - losses[0] for loss in losses]
    assert shown["delta_loss"].tolist() == pytest.approx(deltas, abs=1e-5)
    assert (shown["tokens_per_s"] > 0).all() and shown["speedup"].iloc[0] == 1.0
    # The pick: the smallest preset within 0.01 nats of float.
    ok = [(s, d, n) for s, d, n in zip(sizes, deltas, PRESETS) if n != "fp32" and d <= 0.01]
    size, delta, pick = min(ok)
    speed = float(shown.set_index("variant").loc[pick, "tokens_per_s"])
    assert _said(tab, "Pick").startswith(f"**Takeaway:** Pick {pick}: {size * 1000:.0f} kB ({100 * size / sizes[0]:.0f}"
                                         f" % of float) for {delta:+.4f} loss, at {speed:,.0f} tokens/s.")


@torch.no_grad()
def test_the_next_word_bars_are_both_models_probabilities_after_the_prompt(opened):
    at, model, quant, corpus = opened
    at.text_input(key="fid_prompt").set_value("the dog sat on the").run()
    at.slider(key="fid_k").set_value(4).run()
    assert_clean(at)
    dictionary = corpus.dictionary
    ids = torch.tensor([dictionary.word2idx[w] for w in "the dog sat on the".split()]).view(-1, 1)
    probs = {name: torch.softmax(m(ids, m.init_hidden(1))[0][-1, 0].double(), -1)
             for name, m in (("float", model), ("quantized", quant))}
    top = {i for p in probs.values() for i in torch.topk(p, 4).indices.tolist()}  # each model's top 4
    order = sorted(top, key=lambda i: -float(probs["float"][i]))
    (shown,) = _chart(_tab(at), {"word", "model", "prob", "rank"})
    assert list(zip(shown["model"], shown["word"])) == [(name, dictionary.idx2word[i]) for name in probs
                                                        for i in order]
    assert shown["prob"].tolist() == pytest.approx([float(probs[name][i]) for name in probs for i in order],
                                                   rel=1e-6)
    ranks = {name: {int(i): r + 1 for r, i in enumerate(torch.argsort(p, descending=True))}
             for name, p in probs.items()}
    assert shown["rank"].tolist() == [ranks[name][i] for name in probs for i in order]


def test_the_words_a_class_meets_are_explained_once_on_the_tab(opened):
    """One "What the words mean" expander with every term the tab shows, the corpus's own tokens written as code
    (``<unk>`` would otherwise vanish as an HTML tag), the texts from the one glossary."""
    from ui import glossary

    at = opened[0]
    (words,) = [e for e in _tab(at).expander if e.label == "What the words mean"]
    text = words.markdown[0].value
    for term in ("top-1 agreement", "KL divergence (nats)", "p99", "SQNR (dB)", "perplexity"):
        assert f"- **{term}**: {HELP[term]}" in text
    for token in ("<unk>", "<eos>", "@-@"):
        assert f"- `{token}`: {HELP[token]}" in text
    assert "`state @-@ of @-@ the @-@ art`" in text and "`= = History = =`" in text
    with pytest.raises(KeyError, match="no help text"):
        glossary.expander(["quantum"])
