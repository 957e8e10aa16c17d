"""The "Which parts" tab, headless on the tiny model: the note and the estimate before the map, the map drawn with a
row per part and its takeaway, the pick under a budget measured as a whole model, the pick's text beside float's,
and the hosted bound. Each figure on the page is checked against ``wlm.sensitivity`` run here on the same request."""
from ui.charts.generate import same_pick_takeaway
from wlm import hosting
from wlm.generate import agreement, generate
from wlm.sensitivity import mixed_model, part_label, parts, sensitivity, takeaway, tradeoff, worst_part

from apptest import assert_clean, chart_data, html_words, run_app, takeaways
from conftest import TINY_TEXT, write_corpus

TITLE, SLUG = "Which parts", "which-parts"
TOKENS = 40


def _tab(at):
    (tab,) = [t for t in at.tabs if t.label == TITLE]
    return tab


def _mapped(tokens=TOKENS):
    at = run_app({"tab": SLUG})
    at.slider(key="parts_tokens").set_value(tokens).run()
    at.button(key="parts_go").click().run()
    assert_clean(at)
    return at


def _expected(app_env, tokens=TOKENS):
    return sensitivity(app_env["model"], app_env["corpus"].test, max_tokens=tokens)


def _picked(at):
    at.button(key="parts_pick_go").click().run()
    assert_clean(at)
    return {m.label: m.value for m in _tab(at).metric}


def test_opens_with_the_note_and_an_estimate(app_env):
    at = run_app({"tab": SLUG})
    assert_clean(at)
    tab = _tab(at)
    assert tab.info[0].value.startswith("**The map.**") and "2-layer LSTM is split" in tab.info[0].value
    # 4 parts (embedding, 2 LSTM layers, decoder), each in real int8 and 3 schemes × 7 widths
    assert any(c.value.startswith("The map scores 88 cells (4 parts") and "estimated from a short probe" in c.value
               for c in tab.caption)
    assert at.multiselect(key="parts_schemes").value == ["per-tensor", "per-row", "per-group"]
    assert not tab.get("vega_lite_chart")  # nothing measured before the button


def test_the_map_has_a_row_per_part_and_names_the_costliest(app_env):
    expected = _expected(app_env)
    at = _mapped()
    tab = _tab(at)
    (chart,) = tab.get("vega_lite_chart")
    cells = next(d for d in chart_data(chart) if "kl_mean" in d)
    labels = [part_label(p) for p in parts(app_env["model"])]
    assert list(dict.fromkeys(cells["label"])) == labels
    # real int8 and 3 schemes × 7 widths per part, real int8 repeated beside each scheme's block
    assert len(cells) == len(labels) * 3 * (1 + 7)
    said = takeaways(tab)
    assert f"**Takeaway:** {takeaway(expected)}" in said
    assert any(t.startswith(f"**Takeaway:** {part_label(worst_part(expected))} costs most") for t in said)
    shown = tab.dataframe[0].value  # the map as a table: a row per part and scheme
    assert list(dict.fromkeys(shown["part"])) == labels
    # The radio writes the other number on the cells, without measuring again.
    at.radio(key="parts_number").set_value("kl_mean").run()
    assert_clean(at)
    assert f"**Takeaway:** {takeaway(expected)}" in takeaways(_tab(at))


def test_the_pick_fits_the_budget_and_is_measured(app_env):
    model, ids = app_env["model"], app_env["corpus"].test
    at = _mapped()
    slider = at.slider(key="parts_budget")
    budget = round(slider.min + (slider.max - slider.min) / 5, 4)
    slider.set_value(budget).run()
    shown = _picked(at)
    _, mix = tradeoff(model, _expected(app_env), ids, budget, max_tokens=TOKENS)
    assert mix.size_mb <= budget
    assert shown["Stored size"] == f"{mix.size_mb:.3g} MB"
    assert shown["Δ loss, measured"] == f"{mix.delta_loss:+.4f}"
    assert shown["Δ loss, the map's sum"] == f"{mix.predicted_delta_loss:+.4f}"
    tab = _tab(at)
    assert any(m.value == f"**The pick:** {mix.describe()}." for m in tab.markdown)
    assert len(tab.get("vega_lite_chart")) == 2
    assert any(t.startswith(f"**Takeaway:** The pick takes {mix.size_mb:.3g} MB") for t in takeaways(tab))


def test_the_pick_writes_beside_float(app_env):
    model, corpus = app_env["model"], app_env["corpus"]
    at = _mapped()
    at.sidebar.number_input(key="seed").set_value(3).run()
    _picked(at)
    at.button(key="parts_text_go").click().run()
    assert_clean(at)
    budget = at.slider(key="parts_budget").value
    _, mix = tradeoff(model, _expected(app_env), corpus.test, budget, max_tokens=TOKENS)
    mixed = mixed_model(model, mix)
    texts = [list(generate(m, corpus.dictionary, words=80, temperature=1.0, seed=3)) for m in (model, mixed)]
    shown = [m.value for m in _tab(at).markdown if "line-height" in m.value]
    assert len(shown) == 2 and all(shown)
    assert [html_words(h) for h in shown] == texts
    agreed = agreement(model, mixed, corpus.dictionary, *texts, temperature=1.0, seed=3)
    said = next(t for t in takeaways(_tab(at)) if "Seed 3 (sidebar)" in t)
    assert said.startswith(f"**Takeaway:** {same_pick_takeaway(agreed, 1.0)} Seed 3 (sidebar)")


def test_a_budget_below_the_smallest_mix_says_so(app_env):
    at = _mapped()
    at.slider(key="parts_budget").set_value(at.slider(key="parts_budget").min).run()
    # Only 8 bits: the smallest mix is larger than the budget chosen for the map down to 2 bits.
    at.select_slider(key="parts_widths").set_range(8, 8).run()
    at.button(key="parts_go").click().run()
    assert not at.exception
    (said,) = [e.value for e in _tab(at).error]
    assert said.startswith("No mix of this map's cells fits in") and "Add lower widths" in said
    slider = at.slider(key="parts_budget")
    assert slider.value == slider.min  # the slider starts from the smallest mix
    _picked(at)  # and that budget is picked without error


def test_a_shared_server_bounds_the_tokens(hosted, tmp_path, monkeypatch):
    # A test split longer than the bound (the same words, so the model's vocabulary still matches).
    longer = write_corpus(tmp_path / "longer", {**TINY_TEXT, "test": TINY_TEXT["test"] * 12})
    monkeypatch.setenv("WLM_DATA_DIR", str(longer))
    at = run_app({"tab": SLUG})
    assert_clean(at)
    assert at.slider(key="parts_tokens").max == hosting.MAX_SENSITIVITY_TOKENS
    assert any(f"at most {hosting.MAX_SENSITIVITY_TOKENS:,} tokens" in c.value for c in _tab(at).caption)
