import io
import json
import os
import pickle

import pytest
import torch

from wlm.bundle import load_bundle, save_bundle
from wlm.checkpoint import load_checkpoint_bytes, load_model, open_model
from wlm.corpus import Dictionary
from wlm.errors import WlmError
from wlm.model import ModelConfig, config_from_state_dict, random_model

from conftest import tiny_model


def outputs(model, ntoken):
    x = torch.arange(12).remainder(ntoken).view(-1, 1)
    return model(x, model.init_hidden(1))[0]


def test_tutorial_format_pth_loads_unchanged(tmp_path):
    # The tutorial's checkpoint is torch.save(model.state_dict()) of its LSTMModel(ntoken, 512, 256, 5).
    model = random_model(1000, seed=3)
    path = tmp_path / "word_language_model_quantize.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(path)
    assert loaded.model.config == ModelConfig(ntoken=1000, ninp=512, nhid=256, nlayers=5, dropout=0.5)
    assert torch.equal(outputs(model, 1000), outputs(loaded.model, 1000))
    assert loaded.dictionary is None


def test_config_inferred_from_shapes():
    state = tiny_model(77, nlayers=3).state_dict()
    assert config_from_state_dict(state) == ModelConfig(ntoken=77, ninp=32, nhid=24, nlayers=3, dropout=0.5)


def test_missing_file(tmp_path):
    with pytest.raises(WlmError, match="does not exist"):
        load_model(tmp_path / "nope.pth")


def test_truncated_file(tmp_path):
    path = tmp_path / "t.pth"
    torch.save(tiny_model(20).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WlmError, match="truncated or not a torch.save file"):
        load_model(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(WlmError, match="not a state_dict"):
        load_model(path)
    path2 = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path2)
    with pytest.raises(WlmError, match="missing encoder.weight"):
        load_model(path2)


def test_wrong_shapes(tmp_path):
    state = tiny_model(20).state_dict()
    state["decoder.weight"] = torch.zeros(20, 7)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WlmError, match="wrong shapes: decoder.weight"):
        load_model(path)


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2), "payload": RunsCode(str(marker))}, path)
    with pytest.raises(WlmError, match="refused"):
        load_model(path)
    assert not marker.exists(), "the pickle's code ran"
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(RunsCode(str(marker))))
    with pytest.raises(WlmError):
        load_model(plain)
    assert not marker.exists()


def test_vocab_size_mismatch(tmp_path, tiny_corpus):
    path = tmp_path / "m.pth"
    torch.save(tiny_model(len(tiny_corpus.dictionary) + 5).state_dict(), path)
    with pytest.raises(WlmError, match="output words but the corpus"):
        open_model(path, corpus=tiny_corpus)
    with pytest.raises(WlmError, match="no vocabulary of its own"):
        open_model(path)


def test_bundle_round_trip_and_sha_check(tmp_path):
    model = tiny_model(30)
    dictionary = Dictionary([f"w{i}" for i in range(30)])
    card = save_bundle(model, dictionary, tmp_path / "b", {"name": "t"})
    assert card["config"]["ntoken"] == 30 and len(card["weights_sha256"]) == 64
    loaded = load_bundle(tmp_path / "b")
    assert loaded.dictionary == dictionary
    assert torch.allclose(outputs(model, 30), outputs(loaded.model, 30), atol=1e-2)  # float16 storage
    fp32 = save_bundle(model, dictionary, tmp_path / "b32", {}, dtype=torch.float32)
    assert fp32["weights_dtype"] == "float32"
    assert torch.equal(outputs(model, 30), outputs(load_bundle(tmp_path / "b32").model, 30))
    # A changed weights file is refused.
    weights = tmp_path / "b" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(WlmError, match="does not match its card"):
        load_bundle(tmp_path / "b")


def test_bundle_vocab_must_fit(tmp_path):
    save_bundle(tiny_model(30), Dictionary([f"w{i}" for i in range(30)]), tmp_path / "b", {})
    (tmp_path / "b" / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(WlmError, match="output words but the bundle's vocabulary"):
        load_bundle(tmp_path / "b")
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["config"]["nlayers"] == 2


class _RunsCode:
    def __reduce__(self):
        return (print, ("this should never run",))


def test_load_checkpoint_bytes_accepts_a_state_dict_and_refuses_code(tmp_path, capsys):
    model = tiny_model(30, nlayers=1)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    loaded = load_checkpoint_bytes(buffer.getvalue(), "mine.pth")
    assert loaded.source == "upload mine.pth"
    assert torch.equal(loaded.model.decoder.weight, model.decoder.weight)
    evil = io.BytesIO()
    torch.save({"encoder.weight": _RunsCode()}, evil)
    with pytest.raises(WlmError, match="refused") as info:
        load_checkpoint_bytes(evil.getvalue(), "evil.pth")
    assert "'evil.pth'" in str(info.value)
    assert "should never run" not in capsys.readouterr().out
    with pytest.raises(WlmError, match="truncated or not a torch.save file"):
        load_checkpoint_bytes(buffer.getvalue()[:100], "cut.pth")
    with pytest.raises(WlmError):
        load_checkpoint_bytes(pickle.dumps([1, 2]), "list.pth")


# --- files that are not checkpoints -------------------------------------------------------------

def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tiny_model(20).state_dict().items()})


# What a user may pick by mistake: name, bytes, and words the one-line error must contain.
NOT_CHECKPOINTS = {
    "text": ("notes.txt", b"hello world\nthese are my notes\n", "it is a text file"),
    "text as .pth": ("notes.pth", b"hello world\n", "it is a text file"),
    "long text with accents": ("essay.pth", "déjà vu, naïve café\n".encode() * 400, "it is a text file"),
    "json": ("config.json", json.dumps({"lr": 0.1, "layers": [1, 2]}).encode(), "it is a text file"),
    "empty": ("empty.pth", b"", "it is empty"),
    "random bytes": ("noise.pth", bytes(range(256)) * 16, "not a torch.save file"),
    "pickled list": ("list.pkl", pickle.dumps([1, 2, 3]), "not a torch.save file"),
    "pickled dict of strings": ("strings.pkl", pickle.dumps({"a": "b"}), "not a torch.save file"),
    "torch.save of a list": ("list.pth", _saved([torch.zeros(3)]), "holds a list, not a state_dict"),
    "torch.save of a tensor": ("tensor.pth", _saved(torch.zeros(3, 4)), "single tensor of shape (3, 4)"),
    "torch.save of a dict of strings": ("strings.pth", _saved({"a": "b"}), "not a state_dict"),
    "torch.save of a nested dict": ("nested.pth", _saved({"a": {"b": torch.zeros(2)}}), "not a state_dict"),
    "torch.save of an empty dict": ("empty-dict.pth", _saved({}), "empty dict"),
    "cut-off zip": ("cut.pth", _saved(tiny_model(20).state_dict())[:300], "truncated"),
    "cut-off safetensors": ("cut.safetensors", _safetensors_bytes()[:200], "cannot be read as safetensors"),
    "text as safetensors": ("notes.safetensors", b"hello", "it is a text file"),
    "empty safetensors": ("empty.safetensors", b"", "it is empty"),
    "wrong keys": ("other.pth", _saved({"weight": torch.zeros(3)}), "missing encoder.weight"),
    "wrong ranks": ("ranks.pth", _saved({k: torch.zeros(3) for k in ("encoder.weight", "rnn.weight_ih_l0",
                    "rnn.weight_hh_l0", "decoder.weight", "decoder.bias")}), "do not form the model"),
}
WHAT_A_CHECKPOINT_IS = "a checkpoint is a bundle folder"


def _assert_one_line_naming(message: str, name: str, words: str) -> None:
    assert "\n" not in message and name in message and words in message, message
    assert WHAT_A_CHECKPOINT_IS in message and "torch.save(model.state_dict(), path)" in message


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
def test_not_a_checkpoint_is_one_clear_error(kind, tmp_path):
    name, data, words = NOT_CHECKPOINTS[kind]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(WlmError) as info:
        load_model(path)
    _assert_one_line_naming(str(info.value), str(path), words)
    with pytest.raises(WlmError) as info:  # the app's upload path names the file as the visitor called it
        load_checkpoint_bytes(data, name)
    _assert_one_line_naming(str(info.value), repr(name), words)
    assert "upload" not in str(info.value).split(" is ")[0]  # the server's temporary path never shows


def test_folder_without_a_bundle(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("x")
    with pytest.raises(WlmError) as info:
        load_model(tmp_path / "run")
    _assert_one_line_naming(str(info.value), str(tmp_path / "run"), "folder without model.safetensors")
    save_bundle(tiny_model(30), Dictionary([f"w{i}" for i in range(30)]), tmp_path / "b", {})
    (tmp_path / "b" / "vocab.txt").unlink()
    with pytest.raises(WlmError, match="incomplete: vocab.txt is missing"):
        load_model(tmp_path / "b")


def test_bundle_with_a_broken_card_or_vocab(tmp_path):
    save_bundle(tiny_model(30), Dictionary([f"w{i}" for i in range(30)]), tmp_path / "b", {})
    card = (tmp_path / "b" / "card.json").read_text()
    (tmp_path / "b" / "card.json").write_text("[1, 2]")
    with pytest.raises(WlmError, match="not a valid bundle card"):
        load_model(tmp_path / "b")
    (tmp_path / "b" / "card.json").write_text(card)
    (tmp_path / "b" / "vocab.txt").write_bytes(b"\xff\xfe\x00" * 10)
    with pytest.raises(WlmError, match="not a word list"):
        load_model(tmp_path / "b")
