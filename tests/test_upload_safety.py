"""A small upload must not become a huge model: views that repeat a few values, integer or bool tensors, tensors
sharing bytes, compressed records and malformed safetensors headers are refused before anything is materialised;
a shared server also refuses models over its parameter budget and files over its upload limit; and an upload the
cache lets go of leaves memory although its page still offers the download."""
import gc
import io
import json
import math
import os
import struct
import subprocess
import sys
import tomllib
import weakref
import zipfile

import pytest
import torch
from safetensors.torch import save as safetensors_bytes
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFile

from wlm import hosting
from wlm.checkpoint import (
    check_upload_size,
    load_checkpoint_bytes,
    load_model,
    upload_limit_mb,
)
from wlm.errors import WlmError
from wlm.model import LSTMModel, ModelConfig
from wlm.quantize import PRESETS, quantize
from wlm.quantized_file import load_quantized, quantized_bytes

from apptest import run_app
from conftest import REPO, tiny_model

BUNDLED = ModelConfig(ntoken=33_278)  # the bundled model's architecture: 512, 5 LSTM layers of 256
NOT_A_CHECKPOINT = "is not a checkpoint of the LSTM language model"
REPEATED = "where its shape needs"  # the refusal of a view whose storage is smaller than its shape


def _saved(obj, legacy: bool = False) -> bytes:
    """``torch.save``'s bytes; ``legacy``: the format before PyTorch 1.6 (not a zip), which the tutorial's file
    may be in."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _shapes(config: ModelConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in LSTMModel(config, initialise=False).state_dict().items()}


def _expanded(config: ModelConfig, legacy: bool = False) -> bytes:
    """A state_dict of the right keys and shapes whose every tensor is one float repeated: a few KB on disk."""
    return _saved({k: torch.zeros(1).expand(shape) for k, shape in _shapes(config).items()}, legacy)


def _params(state: dict) -> int:
    return sum(t.numel() for t in state.values())


def _outputs(model):
    x = torch.arange(6).view(-1, 1)
    return model(x, model.init_hidden(1))[0]


def _refused(data: bytes, name: str, **kwargs) -> str:
    with pytest.raises(WlmError) as info:
        load_checkpoint_bytes(data, name, **kwargs)
    message = str(info.value)
    assert "\n" not in message and repr(name) in message, message
    return message


# --- a view that repeats a few values, measured in a fresh process ------------------------------------------------

_PEAK = """
import json, sys
import torch
from wlm.checkpoint import load_checkpoint_bytes
from wlm.errors import WlmError
from wlm.model import model_from_state_dict

def peak_mb():
    # VmHWM: the peak of this process image. ru_maxrss would keep the parent's peak across exec (a test run's
    # pytest holds a gigabyte), and hide what happened here.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

code, warm, *crafted = sys.argv[1:]
def load(path):
    if code == "old":  # what the loader did before the checks: torch.load, then the model from its tensors
        return model_from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    with open(path, "rb") as f:
        return load_checkpoint_bytes(f.read(), "crafted.pth")
load(warm)  # every code path once (imports, the meta device, a model built), so only the crafted file is measured
base, messages = peak_mb(), []
for path in crafted:
    try:
        load(path)
        messages.append("")
    except WlmError as exc:
        messages.append(str(exc))
print(json.dumps({"base": base, "peak": peak_mb(), "messages": messages}))
"""


def _peak_rss(code: str, warm, *crafted) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _PEAK, code, str(warm), *map(str, crafted)], env=env,
                          capture_output=True, text=True, timeout=300)  # the watchdog: a runaway load fails here
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak from /proc/self/status")
def test_a_few_kilobytes_of_repeated_views_are_refused_before_memory_grows(tmp_path):
    warm = tmp_path / "warm.pth"
    warm.write_bytes(_saved(tiny_model(20).state_dict()))
    # The bundled model's shapes, and wider layers in the same layout (a few more bytes of header): 0.4 GB, 10 GB.
    configs = {"bundled": BUNDLED, "wide": ModelConfig(ntoken=33_278, ninp=1024, nhid=1024),
               "huge": ModelConfig(ntoken=33_278, ninp=8192, nhid=8192)}
    crafted = {name: tmp_path / f"{name}.pth" for name in [*configs, "legacy"]}
    for name, config in configs.items():
        crafted[name].write_bytes(_expanded(config))
    crafted["legacy"].write_bytes(_expanded(configs["wide"], legacy=True))
    assert all(path.stat().st_size < 16_000 for path in crafted.values())
    wide_mb = 4 * sum(s.numel() for s in _shapes(configs["wide"]).values()) / 2**20
    assert wide_mb > 400

    new = _peak_rss("new", warm, *crafted.values())
    assert all(NOT_A_CHECKPOINT in m and REPEATED in m for m in new["messages"]), new["messages"]
    assert "encoder.weight of shape (33278, 512) stores 4 bytes" in new["messages"][0]
    assert new["peak"] - new["base"] < 20, new  # megabytes: nothing of the declared models was allocated
    # The measurement can fail: the loader without the checks builds the 0.4 GB model from the same few KB.
    old = _peak_rss("old", warm, crafted["wide"])
    assert old["messages"] == [""] and old["peak"] - old["base"] > 0.6 * wide_mb, old


def test_a_state_dict_of_views_is_refused_through_every_loader(tmp_path):
    data = _expanded(ModelConfig(ntoken=50, ninp=8, nhid=6, nlayers=2))
    assert REPEATED in _refused(data, "views.pth")
    assert REPEATED in _refused(_expanded(ModelConfig(ntoken=50, ninp=8, nhid=6), legacy=True), "old.pth")
    path = tmp_path / "views.pth"
    path.write_bytes(data)
    with pytest.raises(WlmError, match=REPEATED):
        load_model(path)
    # A view over a storage large enough, but not stored whole (a transposed table), is refused too.
    state = tiny_model(20).state_dict()
    state["decoder.weight"] = state["decoder.weight"].t().contiguous().t()
    assert "decoder.weight is a strided view" in _refused(_saved(state), "strided.pth")


# --- dtypes, shared bytes, compressed records ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int8, torch.complex64])
def test_tensors_that_are_not_floating_point_are_refused(dtype, tmp_path):
    state = {k: v.to(dtype) for k, v in tiny_model(20).state_dict().items()}
    name = str(dtype).removeprefix("torch.")
    message = _refused(_saved(state), f"{name}.pth")
    assert NOT_A_CHECKPOINT in message and f"holds {name} values" in message, message
    assert "float32, float16, bfloat16 or float64" in message
    path = tmp_path / "m.pth"
    path.write_bytes(_saved(state))
    with pytest.raises(WlmError, match=f"holds {name} values"):
        load_model(path)


@pytest.mark.parametrize("preset", ["tutorial", "int8+emb4"])
def test_a_quantized_file_is_refused_with_what_it_is(preset):
    # The demo's own download is the quantized file a visitor is most likely to upload by mistake.
    message = _refused(quantized_bytes(quantize(tiny_model(20), PRESETS[preset])), "wlm-int8.pt")
    assert NOT_A_CHECKPOINT in message and "it holds quantized tensors" in message and "load_quantized" in message


def test_the_older_torch_save_format_still_loads_and_is_checked(monkeypatch):
    model = tiny_model(20)
    state = model.state_dict()
    loaded = load_checkpoint_bytes(_saved(state, legacy=True), "old.pth")
    assert torch.equal(_outputs(loaded.model), _outputs(model))
    assert "holds int64 values" in _refused(_saved({k: v.long() for k, v in state.items()}, legacy=True), "i.pth")
    data, params = _saved(state, legacy=True), _params(state)
    assert f"holds a model of {params:,} parameters" in _refused(data, "old.pth", max_params=params - 1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_still_load_as_float32(dtype):
    model = tiny_model(20)
    state = {k: v.to(dtype) for k, v in model.state_dict().items()}
    loaded = load_checkpoint_bytes(_saved(state), "half.pth")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert torch.equal(loaded.model.decoder.weight, state["decoder.weight"].float())
    assert torch.allclose(_outputs(loaded.model), _outputs(model), atol=0.05)


def test_two_keys_sharing_bytes_are_refused_and_disjoint_views_of_one_buffer_load():
    state = tiny_model(20).state_dict()
    tied = {**state, "decoder.bias": state["encoder.weight"].view(-1)[:20]}  # aliases the embedding's first row
    message = _refused(_saved(tied), "tied.pth")
    assert "share the same bytes" in message and "decoder.bias" in message and "encoder.weight" in message
    # One flat buffer cut into disjoint views (an LSTM's weights after flatten_parameters on a GPU) is fine.
    flat = torch.cat([v.reshape(-1) for v in state.values()])
    views, start = {}, 0
    for k, v in state.items():
        views[k] = flat[start:start + v.numel()].view(v.shape)
        start += v.numel()
    loaded = load_checkpoint_bytes(_saved(views), "flat.pth")
    assert torch.equal(loaded.model.rnn.weight_hh_l0, state["rnn.weight_hh_l0"])


def test_compressed_records_are_refused():
    data = _saved(tiny_model(20).state_dict())
    source, packed = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info.filename))
    assert torch.load(io.BytesIO(packed.getvalue()), weights_only=True)  # torch.load itself would inflate them
    message = _refused(packed.getvalue(), "packed.pth")
    assert "is compressed, which torch.save never does" in message
    assert load_checkpoint_bytes(data, "plain.pth").source == "upload plain.pth"


# --- the parameter budget and the upload limit ---------------------------------------------------------------------

def test_a_model_over_the_budget_is_refused_and_loads_without_one(monkeypatch):
    model = tiny_model(20)
    half = {k: v.half() for k, v in model.state_dict().items()}
    data, params = _saved(half), _params(half)
    monkeypatch.setenv(hosting.PARAMS_ENV, str(params - 1))
    message = _refused(data, "big.pth", max_params=hosting.max_params())
    assert f"holds a model of {params:,} parameters" in message and f"up to {params - 1:,}" in message
    assert hosting.PARAMS_ENV in message and "Upload a smaller model" in message
    # Exactly the budget loads, and so does any size without one (a laptop).
    assert _params(load_checkpoint_bytes(data, "big.pth", max_params=params).model.state_dict()) == params
    assert _params(load_checkpoint_bytes(data, "big.pth").model.state_dict()) == params


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(monkeypatch):
    limit = hosting.max_upload_bytes(1000)
    with pytest.raises(WlmError, match=r"larger than this shared server accepts") as info:
        check_upload_size(limit + 1, "huge.pth", 1000)
    assert "'huge.pth'" in str(info.value) and hosting.PARAMS_ENV in str(info.value)
    check_upload_size(limit, "huge.pth", 1000)

    def never(*args, **kwargs):
        raise AssertionError("the bytes were read")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(WlmError, match="larger than this shared server accepts"):
        load_checkpoint_bytes(b"\0" * (limit + 1), "huge.pth", max_params=1000)


def test_the_streamlit_upload_limit_matches_the_default_budget():
    with open(REPO / ".streamlit" / "config.toml", "rb") as f:
        config = tomllib.load(f)
    expected = math.ceil(hosting.max_upload_bytes(hosting.DEFAULT_MAX_PARAMS) / 2**20)
    assert config["server"]["maxUploadSize"] == expected == upload_limit_mb(hosting.DEFAULT_MAX_PARAMS)
    # It fits the largest float32 model the budget allows, and the tutorial's checkpoint (about 110 MB).
    assert expected * 2**20 >= 4 * hosting.DEFAULT_MAX_PARAMS and expected > 110


# --- safetensors: the header is checked before any tensor is read ------------------------------------------------

def _safetensors(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_safetensors_with_short_or_overlapping_offsets_are_refused(tmp_path):
    short = _safetensors({"encoder.weight": {"dtype": "F32", "shape": [33278, 512], "data_offsets": [0, 4]}},
                         b"\0" * 4)
    overlapping = _safetensors({"encoder.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                                "decoder.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                               b"\0" * 16)
    for name, data in {"short.safetensors": short, "overlapping.safetensors": overlapping}.items():
        assert "cannot be read as safetensors" in _refused(data, name)
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WlmError, match="cannot be read as safetensors"):
            load_model(tmp_path / name)
    good = safetensors_bytes({k: v.contiguous() for k, v in tiny_model(20).state_dict().items()})
    assert load_checkpoint_bytes(good, "good.safetensors").model.config.ntoken == 20


def test_an_int32_safetensors_tensor_is_refused_from_the_header(monkeypatch, tmp_path):
    state = {k: v.contiguous() for k, v in tiny_model(20).state_dict().items()}
    state["decoder.bias"] = state["decoder.bias"].to(torch.int32)
    data = safetensors_bytes(state)
    from wlm import weights_file

    def never(*args, **kwargs):
        raise AssertionError("the tensors were read")

    monkeypatch.setattr(weights_file, "load_file", never)
    message = _refused(data, "ints.safetensors")
    assert NOT_A_CHECKPOINT in message and "decoder.bias holds I32 values" in message
    path = tmp_path / "ints.safetensors"
    path.write_bytes(data)
    with pytest.raises(WlmError, match="holds I32 values"):
        load_model(path)


def test_a_safetensors_model_over_the_budget_is_refused_from_its_header(monkeypatch):
    state = {k: v.half().contiguous() for k, v in tiny_model(20).state_dict().items()}
    data, params = safetensors_bytes(state), _params(state)
    from wlm import weights_file

    monkeypatch.setattr(weights_file, "load_file", lambda *a, **k: pytest.fail("the tensors were read"))
    assert f"{params:,} parameters" in _refused(data, "m.safetensors", max_params=params - 1)


# --- through the app ------------------------------------------------------------------------------------------------

def _upload(at, name: str, data: bytes):
    at.sidebar.get("file_uploader")[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.message for e in at.exception]
    return [e.value for e in at.error]


def _upload_page(at):
    at.sidebar.radio(key="source").set_value("upload").run()
    assert not at.exception
    return at


def test_the_app_refuses_views_ints_and_shared_bytes_and_still_loads_a_good_upload(hosted):
    at = _upload_page(run_app())
    model = hosted["model"]
    state = model.state_dict()
    bad = {
        "views.pth": (_expanded(BUNDLED), "encoder.weight of shape (33278, 512) stores 4 bytes"),
        "ints.pth": (_saved({k: v.long() for k, v in state.items()}), "holds int64 values"),
        "flags.pth": (_saved({k: v.bool() for k, v in state.items()}), "holds bool values"),
        "tied.pth": (_saved({**state, "decoder.bias": state["encoder.weight"].view(-1)[:model.config.ntoken]}),
                     "share the same bytes"),
    }
    for name, (data, words) in bad.items():
        errors = _upload(at, name, data)
        assert len(errors) == 1 and repr(name) in errors[0] and words in errors[0], errors
    assert not _upload(at, "good.pth", _saved(state))
    assert "upload good.pth" in " ".join(c.value for c in at.caption)


def test_a_hosted_server_refuses_a_model_over_its_budget_and_a_laptop_loads_it(hosted, monkeypatch):
    half = {k: v.half() for k, v in hosted["model"].state_dict().items()}
    data, params = _saved(half), _params(half)
    monkeypatch.setenv(hosting.PARAMS_ENV, str(params - 1))
    real = UploadedFile.getvalue
    at = _upload_page(run_app())
    errors = _upload(at, "half.pth", data)
    assert len(errors) == 1 and f"holds a model of {params:,} parameters" in errors[0], errors
    assert f"up to {params - 1:,}" in errors[0] and hosting.PARAMS_ENV in errors[0]
    # Over the upload limit as well: refused from its size, its bytes never read.
    read = []
    monkeypatch.setattr(UploadedFile, "getvalue", lambda self: read.append(self.name) or real(self))
    padded = data + b"\0" * hosting.max_upload_bytes(params)
    errors = _upload(at, "padded.pth", padded)
    assert len(errors) == 1 and "larger than this shared server accepts" in errors[0] and read == [], errors
    # Within the budget the same file loads; and a laptop loads it whatever WLM_MAX_PARAMS says.
    monkeypatch.setenv(hosting.PARAMS_ENV, str(params))
    at = _upload_page(run_app())
    assert not _upload(at, "half.pth", data) and read == ["half.pth"]
    monkeypatch.setenv(hosting.PARAMS_ENV, str(params - 1))
    monkeypatch.delenv("WLM_HOSTED")
    at = _upload_page(run_app())
    assert not _upload(at, "half.pth", data)
    assert "upload half.pth" in " ".join(c.value for c in at.caption)


def test_an_evicted_upload_leaves_memory_though_its_page_keeps_the_download(app_env, monkeypatch):
    from ui import backend

    # A server's media file manager keeps each download callable while the session shows its button; AppTest
    # drops its manager after every run, so the callables are kept here as a server would keep them.
    kept = []
    register = MediaFileManager.add_deferred

    def keep(self, data_callable, *args, file_name=None, **kwargs):
        kept.append((file_name, data_callable))
        return register(self, data_callable, *args, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", keep)
    uploaded = []
    load = backend.load_checkpoint_bytes

    def remember(*args, **kwargs):
        loaded = load(*args, **kwargs)
        uploaded.extend([weakref.ref(loaded.model), weakref.ref(loaded.model.encoder.weight)])
        return loaded

    monkeypatch.setattr(backend, "load_checkpoint_bytes", remember)
    at = _upload_page(run_app())
    data = _saved(app_env["model"].state_dict())
    assert not _upload(at, "mine.pth", data)
    assert len(uploaded) == 2 and at.get("download_button")
    download = [made for file_name, made in kept if file_name == "wlm-tutorial.pt"][-1]  # the Model tab's
    # While the upload is loaded, the button's callable gives its quantized model (the page's spec: the tutorial's).
    back = load_quantized(download(), app_env["model"].config, PRESETS["tutorial"])
    assert torch.equal(_outputs(back), _outputs(quantize(uploaded[0](), PRESETS["tutorial"])))
    del back

    backend.load_source.clear()
    backend.quantized_variant.clear()
    gc.collect()
    assert [ref() for ref in uploaded] == [None, None]  # nothing else held the model or its float weights
    assert at.get("download_button")[0].proto.label == "Download the quantized model"  # the page still offers it
    with pytest.raises(WlmError, match="no longer loaded on the server"):
        download()
    # Nor does the session keep the upload's bytes (under any key of its own or of a keyed widget).
    assert not [k for k, v in at.session_state.items() if _holds_bytes(v, data)]
    assert len(at.session_state) > 10 and _holds_bytes({"kept": [data]}, data)  # the search can find them


def _holds_bytes(value, data: bytes) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value) >= len(data) // 2
    if isinstance(value, io.BytesIO):
        return True
    if isinstance(value, dict):
        return any(_holds_bytes(v, data) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(_holds_bytes(v, data) for v in value)
    return False


def test_a_shared_server_bounds_the_layers_before_building_the_lstm(monkeypatch):
    deep = tiny_model(20, nlayers=hosting.MAX_LAYERS + 1).state_dict()
    from wlm import model as wlm_model

    built = []
    original = wlm_model.config_from_state_dict
    monkeypatch.setattr("wlm.weights_file.config_from_state_dict", lambda *a, **k: (built.append(1),
                                                                                    original(*a, **k))[1])
    message = _refused(_saved(deep), "deep.pth", max_params=hosting.DEFAULT_MAX_PARAMS)
    assert f"an LSTM of {hosting.MAX_LAYERS + 1} layers" in message and f"at most {hosting.MAX_LAYERS}" in message
    assert built == []  # refused from the description, before any LSTM was built
    at_bound = tiny_model(20, nlayers=hosting.MAX_LAYERS).state_dict()
    assert load_checkpoint_bytes(_saved(at_bound), "ok.pth", max_params=hosting.DEFAULT_MAX_PARAMS).model
    assert load_checkpoint_bytes(_saved(deep), "deep.pth").model.config.nlayers == hosting.MAX_LAYERS + 1  # laptop
