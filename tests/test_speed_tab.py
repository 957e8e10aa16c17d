"""The Speed & accuracy tab: its table's plain column names and help, the words it counts, the thread sweep beside
the table; with ONNX Runtime rows, and the Fidelity tab against ONNX Runtime."""
import json

import pytest

from ui.glossary import HELP
from wlm.benchmark import COLUMN_NAMES

from apptest import assert_clean, chart_data, open_tab, run_app

SPEED = 2


def test_onnx_runtime_rows_and_fidelity_beside_pytorch(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    at = run_app({"tab": "speed-accuracy"})
    at.checkbox(key="speed_ort").check()
    at.button(key="speed_go").click()
    at.run()
    assert_clean(at)
    speed = at.tabs[2].dataframe[0].value
    assert list(speed["variant"]) == ["fp32", "tutorial", "onnxruntime fp32", "onnxruntime int8"]
    assert list(speed["engine"]) == ["torch", "torch", "onnxruntime", "onnxruntime"]
    # The float export computes what PyTorch's float model does.
    assert speed.loc[2, "loss"] == pytest.approx(speed.loc[0, "loss"], abs=1e-4)
    open_tab(at, "Fidelity")
    at.radio(key="fid_engine").set_value("ONNX Runtime int8")
    at.button(key="kl_go").click()
    at.run()
    assert_clean(at)
    agreement = [m for m in at.tabs[3].metric if m.label == "Same likeliest next word"]
    assert agreement and float(agreement[0].value.rstrip("%")) > 90


def test_the_table_shows_plain_column_names_with_help_and_the_sweep_says_why_it_differs(app_env):
    at = run_app({"tab": "speed-accuracy"})
    at.slider(key="speed_tokens").set_value(60).run()
    at.button(key="speed_go").click().run()
    at.button(key="sweep_go").click().run()
    assert_clean(at)
    tab = at.tabs[SPEED]
    (frame,) = tab.dataframe
    assert list(frame.value.columns) == ["variant", "size_mb", "loss", "ppl", "seconds", "tokens_per_s", "speedup"]
    config = json.loads(frame.proto.columns)  # what the page sends: the label and help each column is shown with
    labels = {column: config[column]["label"] for column in frame.value.columns}
    assert labels == {"variant": "variant", "size_mb": "size (MB)", "loss": "loss", "ppl": "perplexity",
                      "seconds": "seconds", "tokens_per_s": "tokens/s", "speedup": "speedup"}
    assert labels == {column: COLUMN_NAMES[column] for column in labels}  # the names the CLI's markdown uses
    for column, term in (("ppl", "perplexity"), ("loss", "loss"), ("tokens_per_s", "tokens/s"),
                         ("speedup", "speedup"), ("size_mb", "size (MB)")):
        assert config[column]["help"] == HELP[term]
    captions = " ".join(c.value for c in tab.caption)
    # The slider counts tokens, the progress bar predictions: the page says both, and why they differ by one.
    assert "60 tokens (59 predictions)" in captions
    # Both timings of the tutorial's variant at the table's thread count, and why they are not the same.
    table = frame.value.set_index("variant")
    sweep_tokens = max(min(len(app_env["corpus"].test), 100), 60 // 4)
    assert f"the sweep times {sweep_tokens:,} tokens at each thread count, the table 60 once per variant" in captions
    (sweep,) = [d[0] for d in map(chart_data, tab.get("vega_lite_chart")) if "threads" in d[0]]
    at_one = sweep[sweep["threads"] == 1].set_index("variant")["tokens_per_s"]
    for variant in ("fp32", "tutorial"):
        swept, timed = at_one[variant], table.loc[variant, "tokens_per_s"]
        assert (f"{variant} {swept:,.0f} tokens/s in the sweep and {timed:,.0f} in the table "
                f"({100 * abs(swept - timed) / max(swept, timed):.0f} % apart)") in captions
    (words,) = [e for e in tab.expander if e.label == "What the words mean"]
    assert HELP["perplexity"] in words.markdown[0].value


def test_a_press_followed_at_once_by_another_tab_is_measured_when_the_visitor_comes_back(app_env):
    """The same for "Run evaluation": its press is remembered with the request the page showed, although the run
    that follows it is another tab's."""
    at = run_app({"tab": "speed-accuracy"})
    at.slider(key="speed_tokens").set_value(60).run()
    at.button(key="speed_go").click()
    open_tab(at, "Fidelity")
    assert_clean(at)
    open_tab(at, "Speed & accuracy")
    assert_clean(at)
    (frame,) = at.tabs[SPEED].dataframe
    assert list(frame.value["variant"]) == ["fp32", "tutorial"]
