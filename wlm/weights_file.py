"""Reading weights from a file, never running code stored in it, with one clear error for anything that is not
a checkpoint of the model: a text file, an empty or cut-off file, a pickle of something else, a folder.

Shared by the bundle loader and the checkpoint loader, so that both say the same thing about the same mistake.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .errors import WlmError
from .hosting import MAX_LAYERS, PARAMS_ENV
from .model import LSTMModel, config_from_state_dict, model_from_state_dict

# The dtypes a checkpoint of the model may store its weights in; each becomes float32 once the checks pass.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_SAFETENSORS_FLOATS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_FLOAT_NAMES = "float32, float16, bfloat16 or float64"


def read_state_dict(path: str | Path, meta: bool = False) -> dict[str, torch.Tensor]:
    """A plain state_dict from a ``torch.save`` file, loaded without running any pickled code.

    ``meta=True`` describes the file without reading its tensors' data: the same tensors on the meta device, with
    the shapes, strides, dtypes and storage sizes the file declares, so they can be checked before anything is
    read or allocated. A file in the older (non-zip) format is read in full instead: torch describes one only by
    reading every storage (slower than loading it), and loading it checks each storage against the bytes there."""
    path = Path(path)
    if not path.is_file():
        raise WlmError(f"checkpoint {path} does not exist; check the path (the tutorial's file is "
                       "word_language_model_quantize.pth)")
    packed = _compressed_records(path)
    if packed:
        raise not_a_checkpoint(path, f"its data ({packed[0]}) is compressed, which torch.save never does and "
                                     "which lets a small file unpack into gigabytes")
    try:
        state = torch.load(path, map_location="meta" if meta and zipfile.is_zipfile(path) else "cpu",
                           weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(exc)
        if "GLOBAL" in reason:  # the safe loader refused an object: say so, it is the one thing worth knowing
            raise WlmError(f"checkpoint {path} was refused: it holds Python objects other than tensors, which could "
                           f"run code when loaded ({reason}). Save a plain state_dict with "
                           "torch.save(model.state_dict(), path)") from None
        reason = "it cannot be read: it is not a torch.save file of tensors"
        raise not_a_checkpoint(path, _plain_kind(path) or reason) from None
    except Exception as exc:  # whatever the reader trips on, the bytes are not a checkpoint
        if "QuantizedMeta" in str(exc):  # torch describes no quantized tensor without its data
            raise not_a_checkpoint(path, "it holds quantized tensors, where the model loads from float weights (the "
                                         "demo's quantized download is such a file: read it back with "
                                         "wlm.quantized_file.load_quantized)") from None
        reason = f"it cannot be read: it is truncated or not a torch.save file{short_reason(exc)}"
        raise not_a_checkpoint(path, _plain_kind(path) or reason) from None
    if not isinstance(state, dict) or not state:
        raise not_a_checkpoint(path, f"it holds {_what_it_holds(state)}, not a state_dict (a dict of tensors)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise not_a_checkpoint(path, "it is a dict but not a state_dict (a dict of names to tensors)")
    return state


_CHECKPOINT_KINDS = ("a checkpoint is a bundle folder (model.safetensors, vocab.txt, card.json), a .safetensors file, "
                    "or a PyTorch state_dict .pth saved with torch.save(model.state_dict(), path)")


def not_a_checkpoint(path: str | Path, reason: str) -> WlmError:
    """The one-line error for any file or folder that is not a checkpoint: what it is, and what a checkpoint is."""
    return WlmError(f"{path} is not a checkpoint of the LSTM language model: {reason}; {_CHECKPOINT_KINDS}")


def short_reason(exc: BaseException) -> str:
    """An exception as a short parenthesised note, or "" when it says nothing a user can act on."""
    if isinstance(exc, EOFError):
        return " (the file ends early)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0].split(". ")[0].rstrip(".") if lines else ""
    if not any(c.isalpha() for c in text):  # e.g. KeyError 101 from an unpickler reading text
        return ""
    return f" ({text if len(text) <= 100 else text[:99] + '…'})"


def _plain_kind(path: Path) -> str:
    """"it is empty" or "it is a text file" when the bytes say so plainly (the usual wrong picks), else ""."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return ""
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < 4096 or exc.start < len(head) - 3:  # binary bytes, not a character cut by the 4 KB read
            return ""
        text = head[:exc.start].decode("utf-8")
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "it is a text file, not saved weights"
    return ""


def _what_it_holds(state: object) -> str:
    if isinstance(state, torch.Tensor):
        return f"a single tensor of shape {tuple(state.shape)}"
    if isinstance(state, dict):
        return "an empty dict"
    return f"a {type(state).__name__}"


def _unpickling_reason(exc: Exception) -> str:
    """The line of torch's long weights_only message that says what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")),
                lines[0] if lines else type(exc).__name__)



def _compressed_records(path: Path) -> list[str]:
    """The tensor records a zip-format ``torch.save`` file keeps compressed (torch.load would inflate them)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [info.filename for info in archive.infolist()
                    if "/data/" in info.filename and info.compress_type != zipfile.ZIP_STORED]
    except Exception:  # not a zip (the older torch.save format, or no checkpoint at all)
        return []


def read_safetensors(path: Path, meta: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; ``meta=True`` reads its header only, as meta tensors (see
    ``read_state_dict``), refusing other dtypes than the model's before any tensor is read."""
    try:
        if not meta:
            return load_file(path)
        with safe_open(path, framework="pt") as f:  # checks the header: offsets in the file, none overlapping
            header = {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as exc:  # SafetensorError, OSError, or a header that parses into nonsense
        reason = _plain_kind(path) or f"it cannot be read as safetensors{short_reason(exc)}"
        raise not_a_checkpoint(path, reason) from None
    for name, (dtype, _) in header.items():
        if dtype not in _SAFETENSORS_FLOATS:
            raise not_a_checkpoint(path, _wrong_dtype(name, dtype))
    return {name: torch.empty(shape, dtype=_SAFETENSORS_FLOATS[dtype], device="meta")
            for name, (dtype, shape) in header.items()}


# --- what the tensors must be, checked before any is converted, copied or put in a model ------------------------

def _wrong_dtype(name: str, dtype: str) -> str:
    return f"its tensor {name} holds {dtype} values, not the floating-point weights of a model ({_FLOAT_NAMES})"


def _not_a_weight(name: str, tensor: torch.Tensor) -> str:
    """Why ``tensor`` is not a weight saved whole, or "" when it is. Works on meta tensors too (no data needed)."""
    if tensor.dtype not in FLOAT_DTYPES:  # ints and bools would grow into float32; complex, quantized are no weights
        return _wrong_dtype(name, str(tensor.dtype).removeprefix("torch."))
    if tensor.layout != torch.strided:
        return f"its tensor {name} is a {str(tensor.layout).removeprefix('torch.')} tensor, not a dense weight"
    # torch.load accepts views whose storage is smaller than their shape (expand() saves one value for a whole
    # table); converting one would allocate the whole table, so the bytes stored must cover the shape.
    needed = tensor.numel() * tensor.element_size()
    stored = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    if stored < needed:
        return (f"its tensor {name} of shape {tuple(tensor.shape)} stores {max(stored, 0):,} bytes where its shape "
                f"needs {needed:,} (a view that repeats a few values, as expand() makes, not a saved weight)")
    if not tensor.is_contiguous():
        return (f"its tensor {name} is a strided view (strides {tensor.stride()}) rather than a weight saved whole; "
                "save contiguous tensors")
    return ""


def _sharing_bytes(state: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """Two tensors whose bytes overlap, if any (tied or aliased weights). Only loaded tensors have addresses."""
    spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), name)
                   for name, t in state.items() if t.numel() and t.device.type != "meta")
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:  # sorted by start: any overlap shows between neighbours
            return first, second
    return None


def check_tensors(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse tensors that are not the model's weights saved whole and apart, before any is materialised."""
    for name, tensor in state.items():
        reason = _not_a_weight(name, tensor)
        if reason:
            raise not_a_checkpoint(path, reason)
    shared = _sharing_bytes(state)
    if shared:
        raise not_a_checkpoint(path, f"its tensors {shared[0]} and {shared[1]} share the same bytes, where each "
                                     "weight of the model is saved on its own")


def over_budget(what: str, params: int, max_params: int) -> WlmError:
    """The one-line refusal of a model larger than a shared server's parameter budget."""
    return WlmError(f"{what} holds a model of {params:,} parameters; this shared server loads models of up to "
                    f"{max_params:,} (the budget its operator sets with {PARAMS_ENV}), so that its time bounds keep "
                    "their meaning. Upload a smaller model, or run the app on your own computer, where any size loads")


def _check_budget(state: dict[str, torch.Tensor], path: Path, max_params: int | None) -> None:
    """A shared server's bounds, from shapes alone. Layers are bounded too: building an LSTM of thousands of
    tiny layers takes minutes (quadratic in their number) though its parameters fit any budget."""
    if max_params is None:
        return
    layers = sum(1 for key in state if re.fullmatch(r"rnn\.weight_ih_l\d+", key))
    if layers > MAX_LAYERS:
        raise WlmError(f"{path} holds an LSTM of {layers:,} layers; this shared server loads at most {MAX_LAYERS} "
                       "(the tutorial's has 5). Upload a model with fewer layers, or run the app on your own "
                       "computer, where any size loads")
    params = sum(t.numel() for t in state.values())
    if params > max_params:
        raise over_budget(str(path), params, max_params)


@contextlib.contextmanager
def _forming_the_model(path: Path):
    """Errors of tensors that do not form the model, as the one-line kind."""
    try:
        yield
    except WlmError as exc:  # wrong keys or shapes: the message says which; add what a checkpoint is
        raise WlmError(f"{exc}; {_CHECKPOINT_KINDS}") from None
    except Exception as exc:  # tensors of odd ranks: not this model's checkpoint
        raise not_a_checkpoint(path, f"its tensors do not form the model{short_reason(exc)}") from None


def model_from_file(path: Path, read, max_params: int | None = None) -> LSTMModel:
    """The model a file's tensors form. ``read(path, meta)`` (whose errors are already the one-line kind) first
    describes the file (see ``read_state_dict``), which is checked before its tensors are read: dtypes, storage,
    shapes, and at most ``max_params`` parameters (None: no bound). The tensors read are checked again (shared
    bytes show only in them) before any is converted or put in the model."""
    declared = read(path, meta=True)
    check_tensors(declared, path)
    _check_budget(declared, path, max_params)
    with _forming_the_model(path):
        config_from_state_dict(declared, source=str(path))  # shapes only: it never allocates
    described_only = any(t.device.type == "meta" for t in declared.values())
    state = read(path) if described_only else declared  # an older-format file was read in full already
    check_tensors(state, path)
    with _forming_the_model(path):
        return model_from_state_dict(state, str(path))
