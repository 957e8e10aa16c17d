"""The Streamlit app, driven headless with AppTest on a tiny bundled model and a tiny corpus."""
import importlib.util
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import REPO, write_corpus
from wlm.checkpoint import save_bundle
from wlm.evaluate import evaluate
from wlm.export import quantized_bytes
from wlm.generate import first_difference, generate
from wlm.quantize import PRESETS, quantize

APP = str(REPO / "streamlit_app.py")
BUTTONS = ["gen_go", "speed_go", "sweep_go", "kl_go", "sqnr_go", "trade_go"] + [f"walk_{i}" for i in range(7)]


@pytest.fixture(scope="module")
def tiny_app(trained_tiny, tmp_path_factory):
    """A bundle of the tiny trained model (float32, so the app's model equals it exactly) and its corpus."""
    model, corpus = trained_tiny
    root = tmp_path_factory.mktemp("app")
    bundle = root / "bundle"
    save_bundle(model, corpus.dictionary, bundle, {"name": "tiny test model"}, dtype=torch.float32)
    return {"bundle": bundle, "data": write_corpus(root / "corpus"), "model": model, "corpus": corpus, "root": root}


@pytest.fixture
def app_env(tiny_app, monkeypatch):
    monkeypatch.setenv("WLM_MODEL", str(tiny_app["bundle"]))
    monkeypatch.setenv("WLM_DATA_DIR", str(tiny_app["data"]))
    return tiny_app


def run_app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts_of(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def takeaways(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("**Takeaway:**")]


def size_table(at: AppTest):
    return at.tabs[0].table[0].value  # the Model section's only table


def test_first_render_shows_every_section_and_the_size_chart(app_env):
    at = run_app()
    assert_clean(at)
    assert [t.label for t in at.tabs] == ["Model", "Generate", "Speed & accuracy", "Fidelity", "Walkthrough"]
    assert len(charts_of(at)) >= 2  # size per part, next word
    assert len(takeaways(at)) >= len(charts_of(at))
    table = size_table(at)
    # The default is the tutorial's setup: LSTM and Linear shrink, the embedding stays float.
    assert table.loc["embedding", "quantized"] == pytest.approx(table.loc["embedding", "float"])
    assert table.loc["lstm", "quantized"] < table.loc["lstm", "float"]
    assert at.sidebar.selectbox(key="preset").value == "tutorial"
    assert at.query_params["preset"] in ("tutorial", ["tutorial"])
    # The printed architectures, float and quantized, as the tutorial prints them.
    printed = [t.value for t in at.tabs[0].text]
    assert printed[0].startswith("LSTMModel(") and "(rnn): LSTM(" in printed[0]
    assert "DynamicQuantizedLSTM" in printed[1] and "DynamicQuantizedLinear" in printed[1]


def test_every_button_of_every_section_runs_without_error(app_env):
    at = run_app()
    for key in BUTTONS:
        at.button(key=key).click()
        at.run()
        assert_clean(at)
    # Speed table, size, throughput, thread sweep, KL, SQNR, histogram and trade-off charts are all there now.
    assert len(charts_of(at)) >= 10
    assert len(takeaways(at)) >= len(charts_of(at))
    speed = at.tabs[2].dataframe[0].value
    assert list(speed["variant"]) == ["fp32", "tutorial"]
    assert speed.loc[1, "size_mb"] < speed.loc[0, "size_mb"]


def test_onnx_runtime_rows_and_fidelity_beside_pytorch(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    at = run_app()
    at.checkbox(key="speed_ort").check()
    at.button(key="speed_go").click()
    at.run()
    assert_clean(at)
    speed = at.tabs[2].dataframe[0].value
    assert list(speed["variant"]) == ["fp32", "tutorial", "onnxruntime fp32", "onnxruntime int8"]
    assert list(speed["engine"]) == ["torch", "torch", "onnxruntime", "onnxruntime"]
    # The float export computes what PyTorch's float model does.
    assert speed.loc[2, "loss"] == pytest.approx(speed.loc[0, "loss"], abs=1e-4)
    at.radio(key="fid_engine").set_value("ONNX Runtime int8")
    at.button(key="kl_go").click()
    at.run()
    assert_clean(at)
    agreement = [m for m in at.tabs[3].metric if m.label == "Top-1 agreement"]
    assert agreement and float(agreement[0].value.rstrip("%")) > 90


def test_changing_the_spec_changes_the_size_table_and_the_link(app_env):
    at = run_app()
    before = size_table(at)
    at.sidebar.toggle(key="emb").set_value(True).run()
    assert_clean(at)
    after = size_table(at)
    assert after.loc["embedding", "quantized"] < before.loc["embedding", "quantized"]
    assert after.loc["lstm", "quantized"] == pytest.approx(before.loc["lstm", "quantized"])
    assert (before.loc["embedding", "quantized model stores"], after.loc["embedding", "quantized model stores"]) == (
        "float32", "8-bit, scale and offset per row")
    assert after["weights"].tolist() == before["weights"].tolist()  # stored differently, never fewer
    assert at.sidebar.selectbox(key="preset").value == "int8+emb8"  # the toggles now match a preset
    assert at.query_params["emb"] in ("true", ["true"])
    at.sidebar.selectbox(key="preset").set_value("fp32").run()
    assert_clean(at)
    table = size_table(at)
    assert (table["quantized"] == table["float"]).all()
    assert not at.sidebar.toggle(key="lstm").value
    at.sidebar.toggle(key="linear").set_value(True).run()
    assert at.sidebar.selectbox(key="preset").value == "custom"


def test_a_shared_link_opens_the_same_setup(app_env):
    at = run_app({"preset": "int8+emb4", "seed": "7", "threads": "1"})
    assert_clean(at)
    assert at.sidebar.toggle(key="emb").value and at.sidebar.radio(key="bits").value == 4
    assert at.sidebar.number_input(key="seed").value == 7
    custom = run_app({"preset": "custom", "lstm": "true", "linear": "false", "dtype": "float16", "seed": "oops"})
    assert_clean(custom)
    assert custom.sidebar.toggle(key="lstm").value and not custom.sidebar.toggle(key="linear").value
    assert custom.sidebar.radio(key="dtype").value == "float16"
    assert custom.sidebar.number_input(key="seed").value == 0  # a bad value falls back to the default


def _generate(at: AppTest, *, seed: int, temperature: float, words: int = 40, prompt: str = "") -> list[str]:
    at.sidebar.number_input(key="seed").set_value(seed)
    at.slider(key="gen_temperature").set_value(temperature)
    at.number_input(key="gen_words").set_value(words)
    at.text_input(key="gen_prompt").set_value(prompt)
    at.button(key="gen_go").click().run()
    assert_clean(at)
    return at.session_state["gen_result"]["float"]


def test_same_seed_gives_the_same_text_and_temperature_zero_is_greedy(app_env):
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    at = run_app()
    first = _generate(at, seed=3, temperature=1.0)
    again = _generate(at, seed=3, temperature=1.0)
    other = _generate(at, seed=4, temperature=1.0)
    assert first == again and first != other
    assert first == list(generate(model, dictionary, words=40, temperature=1.0, seed=3))
    # What is shown is that text, with <eos> as a line break.
    shown = " ".join(m.value for m in at.markdown if "line-height" in m.value)
    assert all(w in shown for w in other if w != "<eos>")
    greedy = _generate(at, seed=1, temperature=0.0, prompt="the dog")
    assert greedy == _generate(at, seed=99, temperature=0.0, prompt="the dog")
    ids = [dictionary.word2idx[w] for w in "the dog".split()]
    expected, hidden, x = [], model.init_hidden(1), torch.tensor(ids).view(-1, 1)
    with torch.no_grad():
        for _ in range(40):
            logits, hidden = model(x, hidden)
            expected.append(int(logits[-1, 0].argmax()))
            x = torch.tensor([[expected[-1]]])
    assert greedy == [dictionary.idx2word[i] for i in expected]


def test_generation_pairs_float_and_quantized_and_marks_where_they_part(app_env):
    at = run_app()
    _generate(at, seed=5, temperature=1.0, words=200)
    result = at.session_state["gen_result"]
    model, dictionary = app_env["model"], app_env["corpus"].dictionary
    kwargs = dict(words=200, temperature=1.0, seed=5)
    texts = [list(generate(m, dictionary, **kwargs)) for m in (model, quantize(model, PRESETS["tutorial"]))]
    assert result["quantized"] == texts[1]
    assert result["first_difference"] == first_difference(*texts)


def _pth_bytes(model) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


class _WritesAFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_uploads_good_corrupt_and_code_running(app_env):
    at = run_app()
    at.sidebar.radio(key="src").set_value("upload").run()
    assert_clean(at)
    uploader = at.sidebar.get("file_uploader")[0]
    uploader.set_value(("tutorial.pth", _pth_bytes(app_env["model"]), "application/octet-stream")).run()
    assert_clean(at)
    assert "upload tutorial.pth" in " ".join(c.value for c in at.caption)
    cut = _pth_bytes(app_env["model"])[:300]
    at.sidebar.get("file_uploader")[0].set_value(("broken.pth", cut, "application/octet-stream")).run()
    assert not at.exception
    assert any("broken.pth" in e.value and "cannot be read" in e.value for e in at.error)
    marker = app_env["root"] / "pwned.txt"
    evil = io.BytesIO()
    torch.save({"encoder.weight": _WritesAFile(marker)}, evil)
    at.sidebar.get("file_uploader")[0].set_value(("evil.pth", evil.getvalue(), "application/octet-stream")).run()
    assert not at.exception
    assert any("refused" in e.value for e in at.error)
    assert not marker.exists()


def test_a_pth_by_path_uses_the_corpus_vocabulary(app_env, tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(_pth_bytes(app_env["model"]))
    at = run_app({"src": "path", "pth": str(path)})
    assert_clean(at)
    assert len(charts_of(at)) >= 2
    at.sidebar.text_input(key="pth").set_value(str(tmp_path / "missing.pth")).run()
    assert not at.exception and any("does not exist" in e.value for e in at.error)


def test_without_a_corpus_the_model_and_generation_still_work(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_DATA_DIR", str(tmp_path / "nowhere"))
    at = run_app()
    assert not at.exception and not at.error
    assert any("No corpus found" in w.value and "WLM_DATA_DIR" in w.value for w in at.sidebar.warning)
    assert len(charts_of(at)) >= 1
    assert any("No corpus found" in i.value for i in at.info)  # the speed section says what is missing
    at.button(key="gen_go").click().run()
    assert not at.exception and len(at.session_state["gen_result"]["float"]) == 100


def test_a_missing_bundle_is_an_error_message_not_a_crash(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_MODEL", str(tmp_path / "no-bundle"))
    at = run_app()
    assert not at.exception
    assert any("bundled model is missing" in e.value for e in at.error)


def test_the_download_note_loads_the_quantized_model_back(app_env, tmp_path):
    at = run_app({"preset": "int8+emb4"})
    assert_clean(at)
    button = at.get("download_button")[0]
    assert button.proto.label == "Download the quantized model"
    note = next(c.value for c in at.code if "load_quantized" in c.value)
    model = app_env["model"]
    quant = quantize(model, PRESETS["int8+emb4"])
    file_name = next(part for part in note.split("'") if part.endswith(".pt"))
    (tmp_path / file_name).write_bytes(quantized_bytes(quant))
    scope: dict = {}
    exec(note.replace(repr(file_name), repr(str(tmp_path / file_name))), scope)
    x = torch.arange(10).view(-1, 1)
    assert torch.equal(scope["model"](x, model.init_hidden(1))[0], quant(x, model.init_hidden(1))[0])


def _load_app_module():
    spec = importlib.util.spec_from_file_location("streamlit_app_under_test", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)  # defines the cached loaders; main() only runs under `streamlit run`
    return module


def test_twenty_sessions_at_once_match_one_alone(app_env):
    app = _load_app_module()
    key = str(Path(app_env["bundle"]).resolve())
    loaded = app.load_source("bundled", key)
    assert app.load_source("bundled", key) is loaded  # one shared copy
    spec = PRESETS["tutorial"]
    quant = app.quantized_variant(f"bundled:{key}", spec, loaded.model)
    assert app.quantized_variant(f"bundled:{key}", spec, loaded.model) is quant
    ids = app_env["corpus"].test

    def session(i: int):
        texts = [list(generate(m, loaded.dictionary, words=60, temperature=1.0, seed=i % 4))
                 for m in (loaded.model, quant)]
        return *texts, evaluate(quant, ids).loss, evaluate(loaded.model, ids).loss

    alone = [session(i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        together = list(pool.map(session, range(20)))
    for i, result in enumerate(together):
        assert result == alone[i % 4]
