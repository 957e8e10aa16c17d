import pytest
import torch

from wlm.errors import WlmError
from wlm.threads import num_threads


def test_num_threads_sets_and_restores(monkeypatch):
    from wlm import threads

    monkeypatch.setattr(threads, "_resting", None)  # a command's process: no server named a resting count
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(WlmError, match="threads"):
        with num_threads(0):
            pass
