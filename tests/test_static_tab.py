"""The "Static or dynamic" tab, headless: the estimate before the button, the side-by-side table with real and
simulated rows named, the scales chart with its fixed lines, the calibration-size chart, what to notice, and the
hosted bounds. Each figure on the page is checked against ``wlm.static_quant`` run here on the same request."""

from wlm import hosting
from wlm.evaluate import evaluate
from wlm.quantize import PRESETS, quantize
from wlm.static_quant import notice, readable_rows, scales_takeaway, sizes_takeaway, study, variants_takeaway

from apptest import assert_clean, chart_data, run_app, takeaways

TITLE, SLUG = "Static or dynamic", "static-or-dynamic"
TOKENS = 40

def _tab(at):
    (tab,) = [t for t in at.tabs if t.label == TITLE]
    return tab


def _open():
    return run_app({"tab": SLUG})


def _measured(at, tokens=TOKENS):
    at.slider(key="static_tokens").set_value(tokens).run()
    at.button(key="static_go").click().run()
    assert_clean(at)
    return _tab(at)


def _expected(app_env, tokens=TOKENS):
    """The study the page should show, computed here: the tiny corpus's training split holds 500 tokens, so the
    calibration choices and sizes stop there."""
    model, corpus = app_env["model"], app_env["corpus"]
    return study(model, corpus.test, corpus.train, max_tokens=tokens, calibration_tokens=500, sizes=(100, 500),
                 threads=1)


def test_opens_with_the_explanation_and_an_estimate(app_env):
    at = _open()
    assert_clean(at)
    tab = _tab(at)
    assert tab.info[0].value.startswith("**Dynamic** quantization") and "simulated" in tab.info[0].value
    assert any(c.value.startswith("Calibration on up to 500 training tokens") and "estimated from a short probe"
               in c.value for c in tab.caption)
    assert not tab.get("vega_lite_chart")  # nothing measured before the button


def test_measurement_shows_the_table_charts_and_notice(app_env):
    expected = _expected(app_env)
    at = _open()
    tab = _measured(at)
    shown = tab.dataframe[0].value
    wanted = readable_rows(expected.table("variants")).drop(columns=["predictions", "seconds"])
    assert list(shown.columns) == list(wanted.columns)
    assert list(shown["activations"]) == list(wanted["activations"])
    assert list(shown["loss"]) == list(wanted["loss"]) and list(shown["kernels"]) == list(wanted["kernels"])
    # the dynamic row is the tutorial's variant under wlm.evaluate
    dynamic = shown[shown["activations"] == "dynamic"].iloc[0]
    model, corpus = app_env["model"], app_env["corpus"]
    tutorial = evaluate(quantize(model, PRESETS["tutorial"]), corpus.test, max_tokens=TOKENS)
    assert dynamic["loss"] == f"{tutorial.loss:.4f}"
    said = takeaways(tab)
    assert f"**Takeaway:** {variants_takeaway(expected)}" in " ".join(said)
    assert any(scales_takeaway(expected, "rnn.weight_hh_l0") in t for t in said)
    assert any(sizes_takeaway(expected) in t for t in said)
    charts = tab.get("vega_lite_chart")
    assert len(charts) == 2
    fixed = chart_data(charts[0])[-1]
    assert sorted(fixed["fixed"]) == ["static histogram", "static min-max"]
    noticed = "\n".join(m.value for m in tab.markdown)
    untimed = [line for line in notice(expected) if "tokens/s" not in line]  # timings differ from run to run
    assert untimed and all(f"- {line}" in noticed for line in untimed) and "quint8 codes 0-255" in noticed


def test_the_point_selector_redraws_without_measuring_again(app_env):
    expected = _expected(app_env)
    at = _open()
    _measured(at)
    at.selectbox(key="static_point").set_value("decoder").run()
    assert_clean(at)
    assert any(scales_takeaway(expected, "decoder") in t for t in takeaways(_tab(at)))
    at.slider(key="static_tokens").set_value(TOKENS + 5).run()  # a new request is measured only when asked
    assert not _tab(at).get("vega_lite_chart")


def test_hosted_mode_bounds_the_request(hosted, monkeypatch):
    at = _open()
    assert_clean(at)
    assert any(f"at most {hosting.MAX_STATIC_TOKENS:,} test tokens" in c.value for c in _tab(at).caption)
    assert at.slider(key="static_tokens").max <= hosting.MAX_STATIC_TOKENS
