"""A standalone ``.safetensors`` file as a checkpoint (not a bundle folder): its weights become the model, in float32
or float16, with the shapes the file gives; it carries no vocabulary, so the corpus supplies one."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from wlm.checkpoint import load_model, open_model
from wlm.errors import WlmError

from conftest import REPO, tiny_model, tutorial_loss


def _save(model, path, dtype):
    save_file({k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
def test_a_safetensors_file_loads_as_the_model_it_holds(tmp_path, tiny_corpus, dtype):
    original = tiny_model(len(tiny_corpus.dictionary), seed=3, nlayers=3)
    path = _save(original, tmp_path / "weights.safetensors", dtype)
    loaded = load_model(path)
    assert loaded.source == str(path) and loaded.dictionary is None and not loaded.card
    config = loaded.model.config
    assert (config.ntoken, config.ninp, config.nhid, config.nlayers) == (len(tiny_corpus.dictionary), 32, 24, 3)
    # Every weight is the file's, as float32 (float16 ones widened exactly), and the model is ready to evaluate.
    state = loaded.model.state_dict()
    assert set(state) == set(original.state_dict())
    for name, tensor in original.state_dict().items():
        assert state[name].dtype == torch.float32
        assert torch.equal(state[name], tensor.to(dtype).float()), name
    assert not loaded.model.training
    x = tiny_corpus.test[:20].view(-1, 1)
    reference = tiny_model(len(tiny_corpus.dictionary), seed=3, nlayers=3)
    reference.load_state_dict({k: v.to(dtype).float() for k, v in original.state_dict().items()})
    assert torch.equal(loaded.model(x, loaded.model.init_hidden(1))[0], reference(x, reference.init_hidden(1))[0])


def test_a_safetensors_file_takes_its_vocabulary_from_the_corpus(tmp_path, tiny_corpus):
    path = _save(tiny_model(len(tiny_corpus.dictionary)), tmp_path / "weights.safetensors", torch.float32)
    with pytest.raises(WlmError, match="has no vocabulary of its own; pass --data DIR"):
        open_model(path)
    opened = open_model(path, corpus=tiny_corpus)
    assert opened.dictionary == tiny_corpus.dictionary
    # A corpus of another vocabulary size is refused rather than read with the wrong ids.
    other = _save(tiny_model(len(tiny_corpus.dictionary) + 3), tmp_path / "other.safetensors", torch.float32)
    with pytest.raises(WlmError):
        open_model(other, corpus=tiny_corpus)


def test_the_cli_evaluates_a_safetensors_checkpoint(tmp_path, tiny_dir, tiny_corpus):
    model = tiny_model(len(tiny_corpus.dictionary), seed=5)
    path = _save(model, tmp_path / "weights.safetensors", torch.float32)
    proc = subprocess.run([sys.executable, "-m", "wlm", "evaluate", "--checkpoint", str(path), "--data", str(tiny_dir),
                           "--variant", "fp32", "--format", "json"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["variant"], result["split"], result["tokens"]) == ("fp32", "test", len(tiny_corpus.test) - 1)
    assert result["loss"] == pytest.approx(tutorial_loss(model, tiny_corpus.test), rel=1e-6)
