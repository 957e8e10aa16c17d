"""The "Fewer bits" tab: said to be simulated, the sweep on a few tokens, the texts falling apart, the grid."""
import torch

from wlm.generate import agreement, generate
from wlm.low_bits import simulate, sweep

from apptest import assert_clean, html_words, marked_word, run_app, takeaways
from conftest import tutorial_int8, tutorial_loss

TAB = 5
TOKENS = 40


def _tab(at):
    tab = at.tabs[TAB]
    assert tab.label == "Fewer bits"
    return tab


def test_first_render_says_simulated_estimates_and_draws_the_grid(app_env):
    model = app_env["model"]
    at = run_app({"tab": "fewer-bits"})
    assert_clean(at)
    tab = _tab(at)
    assert tab.info[0].value.startswith("**Simulated.**") and "no int4" in tab.info[0].value
    assert any(c.value.startswith("The sweep scores 16 models") for c in tab.caption)
    # 4 bits per tensor, derived here: codes -8..7, the largest |weight| at 7.5 steps, each weight to the nearest.
    weight = model.rnn.weight_hh_l0.detach()
    scale = float(weight.abs().max()) / 7.5
    rounded = torch.clamp(torch.round(weight.double() / scale), -8, 7) * scale
    error = float((rounded - weight.double()).abs().max())
    assert takeaways(tab) == [f"**Takeaway:** 4 bits per-tensor: 16 levels {scale:.2g} apart; the rounded tensor takes "
                              f"{torch.unique(rounded).numel()} distinct values, largest rounding error {error:.2g}."]
    assert len(tab.get("vega_lite_chart")) == 1


def test_the_sweep_shows_the_cores_losses_and_is_remembered(app_env):
    model, ids = app_env["model"], app_env["corpus"].test
    at = run_app({"tab": "fewer-bits"})
    at.slider(key="bits_tokens").set_value(TOKENS).run()
    at.button(key="bits_go").click().run()
    assert_clean(at)
    tab = _tab(at)
    table = sweep(model, ids, max_tokens=TOKENS)
    shown = tab.dataframe[0].value
    assert list(shown.index) == [8, 7, 6, 5, 4, 3, 2]
    per_row = table[table["scheme"] == "per-row"].set_index("bits")["loss"]
    assert shown["loss (per-row)"].to_dict() == per_row.to_dict()
    assert len(tab.get("vega_lite_chart")) == 2
    # The takeaway, derived from the table's losses and the float and int8 losses worked out here.
    float_loss = tutorial_loss(model, ids[:TOKENS])
    int8_loss = tutorial_loss(tutorial_int8(model), ids[:TOKENS])
    parts = []
    for scheme in ("per-tensor", "per-row"):
        over = [bits for bits, loss in shown[f"loss ({scheme})"].items() if loss - float_loss > 0.05]
        parts.append(f"{scheme}: loss first rises by more than 0.05 nats at {over[0]} bits" if over
                     else f"{scheme}: within 0.05 nats down to 2 bits")
    gap = abs(shown.loc[8, "loss (per-tensor)"] - int8_loss)
    expected = (f"**Takeaway:** {'; '.join(parts)}. Simulated 8-bit per-tensor is {gap:.4f} nats from the real int8 "
                "variant (which also rounds activations). The black diamond is the real int8 variant.")
    assert expected in takeaways(tab)
    # The bits slider moves the text and the grid, not the sweep: its chart stays without another press.
    at.select_slider(key="bits_width").set_value(2).run()
    assert expected in takeaways(_tab(at))
    # A new token count is a new request, measured only when asked.
    at.slider(key="bits_tokens").set_value(TOKENS + 10).run()
    assert len(_tab(at).get("vega_lite_chart")) == 1


def test_same_seed_texts_of_float_and_the_n_bit_model(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app({"tab": "fewer-bits"})
    at.sidebar.number_input(key="seed").set_value(3).run()
    at.select_slider(key="bits_width").set_value(2).run()
    at.radio(key="bits_scheme").set_value("per-row").run()
    at.button(key="bits_text_go").click().run()
    assert_clean(at)
    rounded = simulate(model, 2, "per-row")
    texts = [list(generate(m, dictionary, words=80, temperature=1.0, seed=3)) for m in (model, rounded)]
    first = next(i for i, (a, b) in enumerate(zip(*texts)) if a != b)  # where they part, found here
    shown = [m.value for m in _tab(at).markdown if "line-height" in m.value]
    assert [html_words(h) for h in shown] == texts  # both texts, word for word, a line break per <eos>
    assert [marked_word(h) for h in shown] == [first, first]  # and the word where they part highlighted in both
    # The takeaway names where they part and the mean same-pick odds that ``agreement`` measures up to there.
    odds = agreement(model, rounded, dictionary, *texts, temperature=1.0, seed=3).mean_same_pick
    said = next(t for t in takeaways(_tab(at)) if "would pick the same word" in t)
    assert said.startswith(f"**Takeaway:** The texts agree for {first:,} words and part at word {first + 1:,}; at each "
                           f"step until then the two models would pick the same word {100 * odds:.1f} % of the time")
    # At 8 bits the rounded model is closer to float: the texts agree at least as long.
    at.select_slider(key="bits_width").set_value(8).run()
    eight = simulate(model, 8, "per-row")
    texts8 = [list(generate(m, dictionary, words=80, temperature=1.0, seed=3)) for m in (model, eight)]
    first8 = next((i for i, (a, b) in enumerate(zip(*texts8)) if a != b), None)
    shown8 = [m.value for m in _tab(at).markdown if "line-height" in m.value]
    assert [html_words(h) for h in shown8] == texts8 and [marked_word(h) for h in shown8] == [first8, first8]
    assert first8 is None or first8 >= first


def test_hosted_mode_bounds_the_sweep(app_env, monkeypatch):
    monkeypatch.setenv("WLM_HOSTED", "1")
    at = run_app({"tab": "fewer-bits"})
    assert_clean(at)
    assert any("at most 1,200 tokens" in c.value for c in _tab(at).caption)
