import os
import time
from pathlib import Path

import pytest
import streamlit as st
import torch

import wlm
from wlm.bundle import save_bundle
from wlm.corpus import Corpus
from wlm.model import LSTMModel, ModelConfig

from served import start_app, stop_app

REPO = Path(__file__).resolve().parent.parent

TINY_TEXT = {
    "train": "the cat sat on the mat\nthe dog sat on the log\n\n = heading = \na cat and a dog\n" * 20,
    "valid": "the cat sat on the log\nthe dog ran\n" * 5,
    "test": "a dog sat on the mat\nthe cat ran on the log\nzebra\n" * 5,
}


def pytest_configure(config):
    # pytest re-enables deprecation warnings inside each test; keep silent what wlm keeps silent.
    for category, message in wlm.KNOWN_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__name__}")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests never read or write the user's cache (~/.cache/wlm); one folder serves the whole run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WLM_CACHE_DIR", str(tmp_path_factory.mktemp("wlm-cache")))
        yield


def write_corpus(path: Path, texts: dict[str, str] = TINY_TEXT, newline: str = "\n") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for split, text in texts.items():
        (path / f"{split}.txt").write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    return write_corpus(tmp_path / "tiny")


@pytest.fixture
def tiny_corpus(tiny_dir) -> Corpus:
    return Corpus(tiny_dir)


def tiny_model(ntoken: int, seed: int = 0, nlayers: int = 2) -> LSTMModel:
    torch.manual_seed(seed)
    return LSTMModel(ModelConfig(ntoken=ntoken, ninp=32, nhid=24, nlayers=nlayers, dropout=0.0)).eval()


@pytest.fixture(scope="session")
def trained_tiny():
    """A small model trained for a few hundred steps on the tiny corpus, so its predictions mean something."""
    import tempfile

    from wlm.corpus import batchify, get_batch

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Corpus(write_corpus(Path(tmp)))
    model = tiny_model(len(corpus.dictionary)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    source = batchify(corpus.train, 4)
    for _ in range(10):
        hidden = model.init_hidden(4)
        for i in range(0, source.size(0) - 1, 10):
            x, y = get_batch(source, i, 10)
            hidden = tuple(h.detach() for h in hidden)
            logits, hidden = model(x, hidden)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), corpus


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """Wikitext-2: the folder WLM_DATA_DIR names, else the copy shipped in assets/ (real numbers always tested)."""
    from wlm.corpus import BUNDLED_DATA_DIR

    path = Path(os.environ.get("WLM_DATA_DIR") or BUNDLED_DATA_DIR)
    assert (path / "train.txt").is_file(), f"Wikitext-2 is missing from {path}"
    return path


@pytest.fixture(scope="session")
def real_corpus(real_dir) -> Corpus:
    return Corpus(real_dir)


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


def tutorial_int8(model: LSTMModel) -> torch.nn.Module:
    """The tutorial's own call on a copy of ``model``: the reference a test builds without wlm.quantize."""
    import copy

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.LSTM, torch.nn.Linear},
                                                  dtype=torch.qint8)


@torch.no_grad()
def tutorial_loss(model: torch.nn.Module, ids: torch.Tensor, bptt: int = 25) -> float:
    """The tutorial's test loss written out, for tests to derive expected figures apart from wlm.evaluate: batch 1,
    chunks of ``bptt`` steps with the hidden state carried, the mean next-word cross-entropy over every target.
    (Chunk by chunk matters: a dynamic int8 model chooses its activation scales per call.)"""
    hidden, total = model.init_hidden(1), 0.0
    for i in range(0, len(ids) - 1, bptt):
        inputs, targets = ids[i:i + bptt], ids[i + 1:i + 1 + bptt]
        logits, hidden = model(inputs[:len(targets)].view(-1, 1), hidden)
        total += float(torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets, reduction="sum"))
    return total / (len(ids) - 1)


def wait_until(condition, seconds: float = 30.0) -> bool:
    """Whether ``condition()`` became true within ``seconds``: tests wait on conditions, not fixed sleeps."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def hosted(app_env, monkeypatch):
    """The app on a shared server (``WLM_HOSTED=1``), with the tiny bundled model and corpus."""
    monkeypatch.setenv("WLM_HOSTED", "1")
    shown = st.get_option("client.showErrorDetails")
    yield app_env
    st.set_option("client.showErrorDetails", shown)  # one process runs every test; the option is process-wide


@pytest.fixture
def served_app(trained_tiny, tmp_path):
    """`streamlit run` of the app on a bundle of the tiny trained model (float32, so the app's model equals it
    exactly) and the tiny corpus, for the browser tests; yields its URL and stops the server after the test."""
    model, corpus = trained_tiny
    save_bundle(model, corpus.dictionary, tmp_path / "bundle", {"name": "tiny test model"}, dtype=torch.float32)
    env = {**os.environ, "WLM_MODEL": str(tmp_path / "bundle"), "WLM_DATA_DIR": str(write_corpus(tmp_path / "data"))}
    with open(tmp_path / "streamlit.log", "w") as log:
        try:
            server, url = start_app(env, output=log)
        except RuntimeError:
            pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text())
        try:
            yield url
        finally:
            stop_app(server)
