"""The "Fewer bits" tab: said to be simulated, the sweep on a few tokens, the texts falling apart, the grid, and
schemes compared by what a weight takes stored."""
import pytest
import torch

from wlm import hosting
from wlm.bundle import save_bundle
from wlm.generate import agreement, generate
from wlm.low_bits import bits_histogram, bits_per_weight, rounded_names, scheme_label, simulate, sweep
from wlm.model import LSTMModel, ModelConfig

from apptest import assert_clean, chart_data, html_words, marked_word, run_app, takeaways
from conftest import tutorial_int8, tutorial_loss, write_corpus

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
    assert any(c.value.startswith("The sweep scores 23 models (float, real int8, 8 to 2 bits per-tensor, "
                                  "per-row and per-group 64)") for c in tab.caption)
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
    assert len(tab.get("vega_lite_chart")) == 3  # loss against bits, against bits per weight, the grid
    # The takeaway, derived from the table's losses and the float and int8 losses worked out here.
    float_loss = tutorial_loss(model, ids[:TOKENS])
    int8_loss = tutorial_loss(tutorial_int8(model), ids[:TOKENS])
    first_rise, held = {}, []
    for scheme in ("per-tensor", "per-row", "per-group 64"):
        over = [bits for bits, loss in shown[f"loss ({scheme})"].items() if loss - float_loss > 0.05]
        first_rise.setdefault(over[0], []).append(scheme) if over else held.append(scheme)
    said = "; at ".join(f"{bits} bits ({', '.join(names)})" for bits, names in sorted(first_rise.items(), reverse=True))
    said = f"The loss first rises by more than 0.05 nats at {said}" if said else ""
    if held:
        said = (f"{said}; {', '.join(held)} stay{'s' if len(held) == 1 else ''} within 0.05 nats down to 2 bits"
                if said else "Every scheme stays within 0.05 nats down to 2 bits")
    gap = abs(shown.loc[8, "loss (per-tensor)"] - int8_loss)
    expected = (f"**Takeaway:** {said}. Simulated 8-bit per-tensor is {gap:.4f} nats from the real int8 "
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
    assert any(f"at most {hosting.MAX_BITS_TOKENS:,} tokens" in c.value for c in _tab(at).caption)


def test_a_group_and_a_zero_point_are_chosen_for_the_text_and_the_grid(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app({"tab": "fewer-bits"})
    assert at.toggle(key="bits_asym").proto.disabled  # one scale for a whole tensor is symmetric, as torch's is
    at.radio(key="bits_scheme").set_value("per-group").run()
    at.toggle(key="bits_asym").set_value(True).run()
    at.selectbox(key="bits_group").set_value(32).run()
    at.select_slider(key="bits_width").set_value(3).run()
    assert_clean(at)
    tab = _tab(at)
    assert not at.toggle(key="bits_asym").proto.disabled
    asym = scheme_label("per-group-asym", 32)  # the name every table, chart and heading gives the scheme
    assert f"The same seed, float against 3 bits {asym}" in [h.value for h in tab.subheader]
    hist = bits_histogram(model, "rnn.weight_hh_l0", 3, "per-group-asym", group_size=32)
    assert takeaways(tab)[-1] == (
        f"**Takeaway:** 3 bits {asym}: 8 levels {hist.scale:.2g} apart (grid of the group of 32 with the "
        f"largest scale, shifted by its zero point; each group has its own); the rounded tensor takes {hist.distinct} "
        f"distinct values, largest rounding error {float(abs(hist.errors).max()):.2g}.")
    levels = sorted(chart_data(tab.get("vega_lite_chart")[-1])[-1].iloc[:, 0])
    assert levels == pytest.approx(sorted(hist.grid.tolist()), abs=1e-6)  # the drawn grid is that block's
    at.button(key="bits_text_go").click().run()
    assert_clean(at)
    rounded = simulate(model, 3, "per-group-asym", group_size=32)
    texts = [list(generate(m, dictionary, words=80, temperature=1.0, seed=0)) for m in (model, rounded)]
    shown = [m.value for m in _tab(at).markdown if "line-height" in m.value]
    assert [html_words(h) for h in shown] == texts


@pytest.fixture(scope="module")
def wide_app(trained_tiny, tmp_path_factory):
    """A bundle whose every rounded row holds 128 weights, so a row has 2 groups of 64 and 4 of 32."""
    _, corpus = trained_tiny
    torch.manual_seed(1)
    model = LSTMModel(ModelConfig(ntoken=len(corpus.dictionary), ninp=128, nhid=128, nlayers=2, dropout=0.0)).eval()
    root = tmp_path_factory.mktemp("wide")
    save_bundle(model, corpus.dictionary, root / "bundle", {"name": "wide test model"}, dtype=torch.float32)
    return {"bundle": root / "bundle", "data": write_corpus(root / "corpus"), "model": model, "corpus": corpus}


def test_the_sweep_compares_schemes_by_the_bits_a_weight_takes_stored(wide_app, monkeypatch):
    monkeypatch.setenv("WLM_MODEL", str(wide_app["bundle"]))
    monkeypatch.setenv("WLM_DATA_DIR", str(wide_app["data"]))
    model, ids = wide_app["model"], wide_app["corpus"].test
    assert {model.state_dict()[n].shape[1] for n in rounded_names(model)} == {128}
    at = run_app({"tab": "fewer-bits"})
    at.multiselect(key="bits_sweep_schemes").set_value(["per-row", "per-group", "per-group-asym"]).run()
    at.slider(key="bits_tokens").set_value(TOKENS).run()
    asym = scheme_label("per-group-asym", 64)
    assert any(c.value.startswith("The sweep scores 23 models (float, real int8, 8 to 2 bits per-row, per-group 64 "
                                  f"and {asym})") for c in _tab(at).caption)
    at.button(key="bits_go").click().run()
    assert_clean(at)
    tab = _tab(at)
    shown = tab.dataframe[0].value
    # A float16 scale per block shared by its weights, and a 4-bit zero point beside it when asymmetric.
    assert shown.loc[4, "bits per weight (per-row)"] == pytest.approx(4 + 16 / 128)
    assert shown.loc[4, "bits per weight (per-group 64)"] == pytest.approx(4.25)
    assert shown.loc[4, f"bits per weight ({asym})"] == pytest.approx(4 + 20 / 64)
    assert shown.loc[2, "bits per weight (per-group 64)"] == pytest.approx(bits_per_weight((512, 128), 2, "per-group"))
    table = sweep(model, ids, max_tokens=TOKENS, schemes=("per-group",), group_size=64)
    assert shown["loss (per-group 64)"].to_dict() == table[table["scheme"] == "per-group"].set_index("bits")[
        "loss"].to_dict()
    # The size chart: Δ loss against bits per weight, a point per scheme and width, the real int8 variant beside.
    size = tab.get("vega_lite_chart")[1]
    assert "stored bits per weight (scales counted)" in size.proto.spec
    points = chart_data(size)[0]
    assert sorted(points["label"].unique()) == sorted(["per-group 64", asym, "per-row"])
    assert len(points) == 3 * 7
    said = takeaways(tab)[1]
    assert said.startswith("**Takeaway:** At 4 bits: per-row 4.12 bits a weight") and "per-group 64 4.25 bits" in said
    # Another group size is another sweep: its per-group points are measured anew, not the 64-weight ones reused.
    at.selectbox(key="bits_group").set_value(32).run()
    assert len(_tab(at).get("vega_lite_chart")) == 1
    at.button(key="bits_go").click().run()
    shown = _tab(at).dataframe[0].value
    assert shown.loc[4, "bits per weight (per-group 32)"] == pytest.approx(4.5)
    table = sweep(model, ids, max_tokens=TOKENS, schemes=("per-group",), group_size=32)
    assert shown["loss (per-group 32)"].to_dict() == table[table["scheme"] == "per-group"].set_index("bits")[
        "loss"].to_dict()
