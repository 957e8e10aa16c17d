"""Reading a bundle ahead of its first use (``wlm.bundle.read_ahead``): the load that follows takes the model read in
the background, the quantized parts come with it, and a read that failed or went stale is never used."""
import threading

import pytest
import torch

from wlm import bundle
from wlm import quantize as quantize_module
from wlm.bundle import load_bundle, parts_read_ahead, read_ahead, save_bundle
from wlm.corpus import Dictionary
from wlm.errors import WlmError
from wlm.quantize import PRESETS, quantize

from conftest import tiny_model

TUTORIAL = PRESETS["tutorial"]


@pytest.fixture
def folder(tmp_path):
    save_bundle(tiny_model(30), Dictionary([f"w{i}" for i in range(30)]), tmp_path / "b", {}, dtype=torch.float32)
    yield tmp_path / "b"
    bundle._READ_AHEAD.clear()  # whatever a test left unclaimed


def _outputs(model) -> torch.Tensor:
    x = torch.arange(12).view(-1, 1) % 30
    return model(x, model.init_hidden(1))[0]


def test_the_next_load_takes_the_model_read_ahead_and_later_loads_read_again(folder):
    read_ahead(folder, TUTORIAL)
    first = load_bundle(folder)
    assert torch.equal(_outputs(first.model), _outputs(load_bundle(folder).model))
    again = load_bundle(folder)
    assert again.model is not first.model  # taken once: a second load is a fresh read
    assert first.dictionary == again.dictionary and first.card == again.card and first.source == again.source


def test_the_parts_quantized_ahead_make_the_same_variant_without_a_quantize_pass(folder, monkeypatch):
    read_ahead(folder, TUTORIAL)
    model = load_bundle(folder).model
    parts = parts_read_ahead(model)
    assert len(parts) == 2  # the LSTM and the decoder

    def refuse(*args):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantize_module, "_quantize_parts", refuse)
    variant = quantize(model, TUTORIAL, parts)
    monkeypatch.undo()
    assert torch.equal(_outputs(variant), _outputs(quantize(model, TUTORIAL)))
    assert parts_read_ahead(model) == {}  # given once
    assert parts_read_ahead(tiny_model(30)) == {}  # and only for the model read ahead


def test_a_bundle_rewritten_after_the_read_is_read_again(folder):
    read_ahead(folder, None)
    bundle._READ_AHEAD[folder.resolve()].read.wait()
    other = tiny_model(30, seed=1)
    save_bundle(other, Dictionary([f"w{i}" for i in range(30)]), folder, {}, dtype=torch.float32)
    assert torch.equal(_outputs(load_bundle(folder).model), _outputs(other))


def test_a_read_that_failed_leaves_the_load_to_say_why(folder):
    (folder / "card.json").write_text("not json")
    read_ahead(folder, TUTORIAL)
    with pytest.raises(WlmError, match="not a valid bundle card"):
        load_bundle(folder)
    assert not bundle._READ_AHEAD


def test_nothing_is_read_ahead_without_a_weights_file(tmp_path):
    read_ahead(tmp_path / "missing", TUTORIAL)
    assert not bundle._READ_AHEAD


def test_two_loads_at_once_get_two_models(folder):
    read_ahead(folder, None)
    models = []
    threads = [threading.Thread(target=lambda: models.append(load_bundle(folder).model)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(models) == 2 and models[0] is not models[1]


WARM_UP = """
import asyncio, gc, sys
import streamlit_app  # as `streamlit run` imports it: the st.App at its end, nothing drawn

async def start():
    async with streamlit_app.warm_up(streamlit_app.app):
        from ui import backend, model_tab
        from ui.setup import DEFAULTS, bundled_source
        from wlm import bundle, quantize

        # The first page's model was read ahead and taken: by the default variant, with the parts quantized ahead.
        taken = not bundle._READ_AHEAD and bool(backend._HELD_PARTS._values)
        frozen, collected = gc.get_freeze_count(), len(gc.get_objects())
        corpus = len(backend._HELD_CORPORA._values)
        # Whatever the Model tab computes of the default variant is cached: computing any of it now would fail.
        backend.quantized_bytes = backend.size_by_part = backend.weights_per_part = backend.load_model = None
        variant = backend.quantized_variant(bundled_source(), quantize.PRESETS[DEFAULTS["preset"]])
        model_tab.prepare(variant)
        print(taken, corpus, "ui.page" in sys.modules, sys.getswitchinterval(), frozen, collected)

asyncio.run(start())
"""


def test_the_server_start_has_the_default_page_computed_before_it_listens(app_env):
    """`streamlit run` serves streamlit_app.py's st.App; its start-up (``warm_up``) is what a fresh server's first
    visitor no longer waits for. Run in a process of its own, as a server is."""
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, "-c", WARM_UP], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    taken, corpora, page, switch, frozen, collected = done.stdout.split()
    # Over by the time the server would listen: the model read, quantized the sidebar's default way and taken by
    # the default variant, the corpus split, the Model tab's sizes measured, the tabs imported.
    assert (taken, corpora, page) == ("True", "1", "True")
    assert float(switch) == pytest.approx(0.05)  # a computing thread keeps the interpreter for whole slices
    # What start-up made is left out of the collection Streamlit runs after every page run.
    assert int(frozen) > 100_000 and int(collected) < int(frozen) / 10, (frozen, collected)
