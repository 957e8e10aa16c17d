import pytest
import torch

from wlm.errors import WlmError
from wlm.train import EXAMPLES_RECIPE, RECIPES, recipe_with, train


def small_recipe(**kw):
    return recipe_with("adamw", **{"batch_size": 4, "bptt": 8, "epochs": 2, "warmup_batches": 3, **kw})


def test_resume_reaches_the_same_state(tmp_path, tiny_corpus):
    ntoken = len(tiny_corpus.dictionary)
    args = (tiny_corpus.train, tiny_corpus.valid, ntoken)
    quiet = dict(log=lambda s: None, progress=False, window=5)
    recipe = small_recipe(dropout=0.3)
    straight, _ = train(*args, recipe, tmp_path / "a", seed=5, **quiet)
    stopped, state = train(*args, recipe, tmp_path / "b", seed=5, max_batches=13, **quiet)
    assert state.step == 13 and (tmp_path / "b" / "resume.pt").is_file()
    resumed, final = train(*args, recipe, tmp_path / "b", seed=5, resume=True, **quiet)
    assert final.epoch == 2 and len(final.history) == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "best.pt").is_file()
    assert final.history[-1]["valid_loss"] < final.history[0]["valid_loss"] + 0.5


def test_training_lowers_the_loss(tmp_path, tiny_corpus):
    _, state = train(tiny_corpus.train, tiny_corpus.valid, len(tiny_corpus.dictionary),
                     small_recipe(epochs=6, lr=1e-2, dropout=0.0), tmp_path, log=lambda s: None, progress=False,
                     window=5)
    first, last = state.windows[0][1], state.windows[-1][1]
    assert last < first - 0.3  # the full 5-layer architecture, so only a few steps of real progress


def test_seed_recipe_is_available():
    r = RECIPES[EXAMPLES_RECIPE]
    assert (r.optimizer, r.lr, r.clip, r.dropout, r.batch_size, r.bptt) == ("sgd", 20.0, 0.25, 0.5, 20, 35)
    assert recipe_with("tutorial") == recipe_with("examples") == r  # the name it once had still works
    with pytest.raises(WlmError, match="unknown recipe"):
        recipe_with("magic")


def test_missing_resume_file(tmp_path, tiny_corpus):
    with pytest.raises(WlmError, match="resume checkpoint"):
        train(tiny_corpus.train, tiny_corpus.valid, len(tiny_corpus.dictionary), small_recipe(), tmp_path,
              resume=True, log=lambda s: None, progress=False)
