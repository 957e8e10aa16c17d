"""The "Fewer bits" tab: said to be simulated, the sweep on a few tokens, the texts falling apart, the grid."""
from wlm import charts, lesson_charts
from wlm.generate import agreement, generate
from wlm.low_bits import bits_histogram, simulate, sweep

from apptest import assert_clean, run_app, takeaways

TAB = 5
TOKENS = 40


def _tab(at):
    tab = at.tabs[TAB]
    assert tab.label == "Fewer bits"
    return tab


def test_first_render_says_simulated_estimates_and_draws_the_grid(app_env):
    model = app_env["model"]
    at = run_app()
    assert_clean(at)
    tab = _tab(at)
    assert tab.info[0].value.startswith("**Simulated.**") and "no int4" in tab.info[0].value
    assert any(c.value.startswith("The sweep scores 16 models") for c in tab.caption)
    hist = lesson_charts.bits_histogram_chart(bits_histogram(model, "rnn.weight_hh_l0", 4, "per-tensor"))
    assert takeaways(tab) == [f"**Takeaway:** {hist.takeaway}"]
    assert len(tab.get("vega_lite_chart")) == 1


def test_the_sweep_shows_the_cores_losses_and_is_remembered(app_env):
    model, ids = app_env["model"], app_env["corpus"].test
    at = run_app()
    at.slider(key="bits_tokens").set_value(TOKENS).run()
    at.button(key="bits_go").click().run()
    assert_clean(at)
    tab = _tab(at)
    table = sweep(model, ids, max_tokens=TOKENS)
    loss = lesson_charts.bits_loss_chart(table)
    assert f"**Takeaway:** {loss.takeaway}" in takeaways(tab)
    assert "nats" in loss.takeaway and "real int8" in loss.takeaway
    shown = tab.dataframe[0].value
    assert list(shown.index) == [8, 7, 6, 5, 4, 3, 2]
    per_row = table[table["scheme"] == "per-row"].set_index("bits")["loss"]
    assert shown["loss (per-row)"].to_dict() == per_row.to_dict()
    assert len(tab.get("vega_lite_chart")) == 2
    # The bits slider moves the text and the grid, not the sweep: its chart stays without another press.
    at.select_slider(key="bits_width").set_value(2).run()
    assert f"**Takeaway:** {loss.takeaway}" in takeaways(_tab(at))
    # A new token count is a new request, measured only when asked.
    at.slider(key="bits_tokens").set_value(TOKENS + 10).run()
    assert len(_tab(at).get("vega_lite_chart")) == 1


def test_same_seed_texts_of_float_and_the_n_bit_model(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app()
    at.sidebar.number_input(key="seed").set_value(3).run()
    at.select_slider(key="bits_width").set_value(2).run()
    at.radio(key="bits_scheme").set_value("per-row").run()
    at.button(key="bits_text_go").click().run()
    assert_clean(at)
    rounded = simulate(model, 2, "per-row")
    texts = [list(generate(m, dictionary, words=80, temperature=1.0, seed=3)) for m in (model, rounded)]
    agreed = agreement(model, rounded, dictionary, *texts, temperature=1.0, seed=3)
    shown = [m.value for m in _tab(at).markdown if "line-height" in m.value]
    assert shown == [charts.paired_html(texts[0], agreed.first_difference, texts[1]),
                     charts.paired_html(texts[1], agreed.first_difference, texts[0])]
    assert any(t.startswith(f"**Takeaway:** {charts.same_pick_takeaway(agreed, 1.0)}") for t in takeaways(_tab(at)))
    # At 8 bits the rounded model is closer to float: the texts agree at least as long.
    at.select_slider(key="bits_width").set_value(8).run()
    eight = simulate(model, 8, "per-row")
    texts8 = [list(generate(m, dictionary, words=80, temperature=1.0, seed=3)) for m in (model, eight)]
    assert [m.value for m in _tab(at).markdown if "line-height" in m.value][1] == charts.paired_html(
        texts8[1], agreement(model, eight, dictionary, *texts8, temperature=1.0, seed=3).first_difference, texts8[0])


def test_hosted_mode_bounds_the_sweep(app_env, monkeypatch):
    monkeypatch.setenv("WLM_HOSTED", "1")
    at = run_app()
    assert_clean(at)
    assert any("at most 1,200 tokens" in c.value for c in _tab(at).caption)
