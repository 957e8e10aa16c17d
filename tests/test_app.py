"""The Streamlit app as a whole, driven headless with AppTest on a tiny bundled model and a tiny corpus: every
tab, the sidebar's sources and link, and many sessions at once. Each tab's own behaviour is in test_<tab>_tab.py."""
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from wlm.evaluate import evaluate
from wlm.generate import generate
from wlm.quantize import PRESETS

from apptest import assert_clean, charts_of, open_tab, run_app, size_table, takeaways

TITLES = ["Model", "Generate", "Speed & accuracy", "Fidelity", "Inside a multiply", "Fewer bits", "Walkthrough",
          "Static or dynamic", "When int8 pays", "Which parts"]
# Every button of every tab, by tab: only the open tab runs, so each tab is opened before its buttons are pressed.
BUTTONS = {"Model": [], "Generate": ["gen_go"], "Speed & accuracy": ["speed_go", "sweep_go"],
           "Fidelity": ["kl_go", "sqnr_go", "trade_go"], "Inside a multiply": [],
           "Fewer bits": ["bits_go", "bits_text_go"], "Walkthrough": ["walk_next"] * 7,  # every card
           "Static or dynamic": ["static_go"], "When int8 pays": [],  # (its sweep needs a longer test split)
           "Which parts": ["parts_go", "parts_pick_go", "parts_text_go"]}


def open_tab_index(at) -> int:
    """The position of the one tab whose code ran this time (the others are there, and empty)."""
    (shown,) = [i for i, tab in enumerate(at.tabs) if tab.children]
    return shown


def test_first_render_shows_every_section_and_the_size_chart(app_env):
    at = run_app()
    assert_clean(at)
    assert [t.label for t in at.tabs] == TITLES
    assert at.session_state["open_tab"] == "Model" and open_tab_index(at) == 0  # no tab in the link: Model
    assert len(charts_of(at)) >= 1  # size per part
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
    # Every other section renders when its tab is opened, each chart with its takeaway; Fidelity's next word.
    for i, title in enumerate(TITLES[1:], start=1):
        open_tab(at, title)
        assert_clean(at)
        assert open_tab_index(at) == i, title
        assert len(takeaways(at)) >= len(charts_of(at)), title
        if title == "Fidelity":
            assert len(charts_of(at)) >= 1  # next word


def test_every_button_of_every_section_runs_without_error(app_env):
    at = run_app()
    charts = {}
    for i, (title, keys) in enumerate(BUTTONS.items()):
        open_tab(at, title)
        assert_clean(at)
        for key in keys:
            at.button(key=key).click()
            at.run()
            assert_clean(at)
        assert len(takeaways(at)) >= len(charts_of(at)), title
        charts[title] = len(charts_of(at))
        if title == "Speed & accuracy":
            speed = at.tabs[i].dataframe[0].value
            assert list(speed["variant"]) == ["fp32", "tutorial"]
            assert speed.loc[1, "size_mb"] < speed.loc[0, "size_mb"]
        if title == "Walkthrough":
            assert at.query_params["step"] in ("8", ["8"])  # Next went through all eight cards
    # Size per part (Model); size, throughput and thread sweep (Speed & accuracy); next word, KL, SQNR, histogram
    # and trade-off (Fidelity) charts are all there now (the Walkthrough shows tables and printed output, no charts).
    assert charts["Model"] >= 1 and charts["Speed & accuracy"] >= 3 and charts["Fidelity"] >= 5, charts
    assert sum(charts.values()) >= 9, charts


def test_a_shared_link_opens_the_same_setup(app_env):
    at = run_app({"preset": "int8+emb4", "seed": "7", "threads": "1"})
    assert_clean(at)
    assert at.sidebar.toggle(key="embedding").value and at.sidebar.radio(key="embedding_bits").value == 4
    assert at.sidebar.number_input(key="seed").value == 7
    custom = run_app({"preset": "custom", "lstm": "true", "linear": "false", "dtype": "float16", "seed": "oops"})
    assert_clean(custom)
    assert custom.sidebar.toggle(key="lstm").value and not custom.sidebar.toggle(key="linear").value
    assert custom.sidebar.radio(key="dtype").value == "float16"
    assert custom.sidebar.number_input(key="seed").value == 0  # a bad value falls back to the default


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
    at.sidebar.radio(key="source").set_value("upload").run()
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
    assert len(charts_of(at)) >= 1  # the Model tab's size per part
    open_tab(at, "Fidelity")
    assert_clean(at)
    assert len(charts_of(at)) >= 1  # next word: the .pth's words are the corpus's
    at.sidebar.text_input(key="path").set_value(str(tmp_path / "missing.pth")).run()
    assert not at.exception and any("does not exist" in e.value for e in at.error)


def test_without_a_corpus_the_model_and_generation_still_work(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_DATA_DIR", str(tmp_path / "nowhere"))
    at = run_app()
    assert not at.exception and not at.error
    assert any("No corpus found" in w.value and "the folder WLM_DATA_DIR names" in w.value and "unset it" in w.value
               for w in at.sidebar.warning)
    assert len(charts_of(at)) >= 1
    open_tab(at, "Speed & accuracy")
    assert not at.exception and not at.error
    assert any("No corpus found" in i.value for i in at.info)  # the speed section says what is missing
    open_tab(at, "Generate")
    at.button(key="gen_go").click().run()
    assert not at.exception and len(at.session_state["gen_result"]["float"]) == 100


def test_a_missing_bundle_is_an_error_message_not_a_crash(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("WLM_MODEL", str(tmp_path / "no-bundle"))
    at = run_app()
    assert not at.exception
    assert any("bundled model is missing" in e.value for e in at.error)


def test_twenty_sessions_at_once_match_one_alone(app_env):
    from ui import backend
    from ui.requests import ModelSource

    key = str(Path(app_env["bundle"]).resolve())
    loaded = backend.load_source("bundled", key)
    assert backend.load_source("bundled", key) is loaded  # one shared copy
    spec = PRESETS["tutorial"]
    variant = backend.quantized_variant(ModelSource("bundled", key, loaded), spec)
    assert backend.quantized_variant(ModelSource("bundled", key, loaded), spec) is variant  # keyed by identity
    quant = variant.quantized
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



def test_with_nothing_set_the_bundled_model_and_corpus_serve_the_app(monkeypatch, tmp_path):
    # A fresh clone: no WLM_MODEL, no WLM_DATA_DIR, no ./data; the cache may be empty.
    monkeypatch.delenv("WLM_MODEL", raising=False)
    monkeypatch.delenv("WLM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    at = run_app()
    assert_clean(at)
    assert any(c.value.startswith("Corpus: Wikitext-2, bundled (33,278 words, 245,569 test tokens)")
               for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]
    for title in TITLES:  # no section says a corpus is missing
        open_tab(at, title)
        assert_clean(at)
        assert not at.sidebar.warning and not any("No corpus" in i.value for i in at.info), title


def test_a_corpus_that_is_not_utf8_is_one_clear_message(app_env, monkeypatch, tmp_path):
    from conftest import write_corpus

    data = write_corpus(tmp_path / "wt2")
    (data / "train.txt").write_bytes(b"caf\xe9 au lait\n")
    monkeypatch.setenv("WLM_DATA_DIR", str(data))
    at = run_app()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [f"{data / 'train.txt'} is not UTF-8 text (bad byte at offset 3); "
                                                    "re-save it as UTF-8"]
    assert len(charts_of(at)) >= 1  # the model's tabs still work


@pytest.mark.parametrize("raw", [str(2**31), "-1", "oops"])
def test_a_links_seed_out_of_range_says_the_range(app_env, raw):
    at = run_app({"seed": raw, "tab": "generate"})
    assert_clean(at)
    assert at.sidebar.number_input(key="seed").value == 0
    (note,) = [w.value for w in at.sidebar.warning if "seed" in w.value]
    assert raw in note and "0 to 2,147,483,647" in note
    at.sidebar.number_input(key="seed").set_value(5).run()  # choosing a seed answers the note
    assert not [w for w in at.sidebar.warning if "seed" in w.value]


def test_a_links_seed_in_range_is_used_without_a_note(app_env):
    at = run_app({"seed": str(2**31 - 1), "tab": "generate"})
    assert at.sidebar.number_input(key="seed").value == 2**31 - 1
    assert not [w for w in at.sidebar.warning if "seed" in w.value]
