"""The same model under ONNX Runtime: export, int8 dynamic quantization, and a session that acts like the model.

The float model is exported once with the LSTM's hidden state as graph inputs and outputs, so
chunks can be fed one after another with the state carried, exactly as ``evaluate`` does with the
torch model. ``quantize_dynamic`` turns that graph's weights (embedding Gather, LSTM, decoder MatMul)
into int8. Both files are cached on disk, keyed by a hash of the weights and of the options
that shaped them, so the slow export happens once per model.

``OnnxModel`` takes (ids [T, B], (h, c)) and returns (logits [T, B, V], (h, c)) as torch tensors,
which lets ``wlm.evaluate.evaluate`` and ``wlm.fidelity.output_fidelity`` run on it unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .cache import cache_root, in_use, prune, touch
from .errors import WlmError
from .out_files import write_atomically

ENGINES = ("torch", "onnxruntime")
ORT_VARIANTS = ("fp32", "int8")  # the float export, and quantize_dynamic's int8 weights
OPSET = 17
INPUT_NAMES = ["input", "h0", "c0"]
OUTPUT_NAMES = ["logits", "hn", "cn"]
# Bump when the export or quantization steps change, so older cached files are not reused.
FORMAT_VERSION = 1
# Exported models kept on disk (the most recently used); each takes ~145 MB.
KEEP_EXPORTS = 3


def parse_engines(text: str | None) -> list[str]:
    """Comma-separated engine names, each checked; torch when none are given."""
    names = [e.strip() for e in (text or "torch").split(",") if e.strip()] or ["torch"]
    for name in names:
        if name not in ENGINES:
            raise WlmError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return list(dict.fromkeys(names))


def require_onnxruntime():
    """The onnxruntime module, or a WlmError saying how to install it."""
    try:
        import onnx  # noqa: F401  (quantization reads and writes the graph with it)
        import onnxruntime
    except ImportError as exc:
        raise WlmError(f"the onnxruntime engine needs the onnx and onnxruntime packages ({exc}); install them with "
                       "`pip install onnx onnxruntime` or `pip install -r requirements.txt`") from None
    return onnxruntime


def weights_hash(model: nn.Module) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}\n".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def export_options() -> dict:
    """Everything besides the weights that decides the exported files' contents."""
    import onnxruntime

    return {"format": FORMAT_VERSION, "opset": OPSET, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "int8": {"weight_type": "QInt8", "per_channel": False,
                                                            "reduce_range": False}}


def _check_float(model: nn.Module) -> None:
    weight = getattr(getattr(model, "decoder", None), "weight", None)
    if not isinstance(weight, torch.Tensor) or not isinstance(getattr(model, "rnn", None), nn.LSTM):
        raise WlmError("ONNX export needs the float LSTM language model; pass the model before torch quantization")


def export_onnx(model: nn.Module, path: Path) -> None:
    """Write the float model as ONNX, with sequence length and batch size left free."""
    _check_float(model)
    nlayers, nhid = model.rnn.num_layers, model.rnn.hidden_size
    ids = torch.zeros(3, 1, dtype=torch.long)
    hidden = (torch.zeros(nlayers, 1, nhid), torch.zeros(nlayers, 1, nhid))
    free = {"input": {0: "seq", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"},
            "logits": {0: "seq", 1: "batch"}, "hn": {1: "batch"}, "cn": {1: "batch"}}
    was_training = model.training
    model.eval()  # dropout off in the graph
    try:
        # The TorchScript exporter maps nn.LSTM with explicit (h0, c0) to one ONNX LSTM node per layer.
        torch.onnx.export(model, (ids, hidden), str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes=free, opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many types; all mean the same to a user
        raise WlmError(f"exporting the model to ONNX failed ({type(exc).__name__}: {exc}); "
                       "the engine supports the float LSTM language model with torch and onnx from "
                       "requirements.txt") from None
    finally:
        model.train(was_training)


def quantize_onnx(source: Path, path: Path) -> None:
    """int8 weights for every op ONNX Runtime can quantize dynamically (Gather, LSTM, MatMul)."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            # ONNX Runtime's recommended first step: shape inference and graph clean-up, which
            # the quantizer uses to decide what it can quantize.
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(source, prepared)
            quantize_dynamic(prepared, path, weight_type=QuantType.QInt8, per_channel=False, reduce_range=False)
    except Exception as exc:
        raise WlmError(f"quantizing the ONNX model failed ({type(exc).__name__}: {exc})") from None


def onnx_files(model: nn.Module, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Paths of the fp32 and int8 ONNX files for ``model``, exporting and quantizing them if not cached."""
    with _cached_export(model, cache_dir) as paths:
        return paths


@contextlib.contextmanager
def _cached_export(model: nn.Module, cache_dir: str | Path | None = None) -> Iterator[dict[str, Path]]:
    """``onnx_files``'s paths, with the export's folder kept from pruning for the block (another session or
    server pruning the cache must not delete the files this one is writing or about to load)."""
    require_onnxruntime()
    _check_float(model)
    options = export_options()
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "onnx"
    folder = root / f"{weights_hash(model)[:20]}-{key}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WlmError(f"cannot create the ONNX cache folder {folder} ({exc}); set WLM_CACHE_DIR to a writable "
                       "folder") from None
    with in_use(folder):
        paths = {"fp32": folder / "model.fp32.onnx", "int8": folder / "model.int8.onnx"}
        if not paths["fp32"].is_file():
            write_atomically(paths["fp32"], lambda tmp: export_onnx(model, tmp))
        if not paths["int8"].is_file():
            write_atomically(paths["int8"], lambda tmp: quantize_onnx(paths["fp32"], tmp))
        options_file = folder / "options.json"
        if not options_file.is_file():
            write_atomically(options_file, lambda tmp: tmp.write_text(json.dumps(options, indent=2) + "\n",
                                                                      encoding="utf-8"))
        touch(folder)
        prune(root, KEEP_EXPORTS)
        yield paths


class OnnxModel:
    """An ONNX Runtime session with the torch model's call shape and ``init_hidden``."""

    def __init__(self, path: str | Path, *, threads: int | None = 1):
        ort = require_onnxruntime()
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise WlmError(f"threads must be a whole number of at least 1, got {threads!r}")
        options = ort.SessionOptions()
        # intra-op threads split one kernel's work; inter-op threads would only help parallel
        # branches, which this chain of ops does not have.
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise WlmError(f"ONNX Runtime cannot load {self.path} ({exc}); delete the file so it is exported "
                           "again") from None
        self.size_bytes = self.path.stat().st_size  # now: a later prune may delete the file, not the session
        h0 = {i.name: i.shape for i in self.session.get_inputs()}["h0"]
        self.nlayers, self.nhid = int(h0[0]), int(h0[2])


    def init_hidden(self, bsz: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.nlayers, bsz, self.nhid)
        return torch.zeros(shape), torch.zeros(shape)

    def eval(self) -> "OnnxModel":
        return self  # a session has no training mode; kept so harnesses written for nn.Module work

    def __call__(self, input: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        h, c = hidden
        feed = {"input": np.ascontiguousarray(input.numpy()), "h0": np.ascontiguousarray(h.numpy()),
                "c0": np.ascontiguousarray(c.numpy())}
        logits, hn, cn = self.session.run(OUTPUT_NAMES, feed)
        return torch.from_numpy(logits), (torch.from_numpy(hn), torch.from_numpy(cn))


def onnx_model(model: nn.Module, variant: str = "int8", *, threads: int | None = 1,
               cache_dir: str | Path | None = None) -> OnnxModel:
    """``model`` under ONNX Runtime, as the float export (``fp32``) or quantize_dynamic's ``int8``."""
    if variant not in ORT_VARIANTS:
        raise WlmError(f"unknown onnxruntime variant {variant!r}; choose from {', '.join(ORT_VARIANTS)}")
    with _cached_export(model, cache_dir) as paths:  # kept until the session has read the file
        return OnnxModel(paths[variant], threads=threads)
