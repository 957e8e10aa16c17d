"""Reading weights from a file, never running code stored in it, with one clear error for anything that is not
a checkpoint of the model: a text file, an empty or cut-off file, a pickle of something else, a folder.

Shared by the bundle loader and the checkpoint loader, so that both say the same thing about the same mistake.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

from .errors import WlmError
from .model import LSTMModel, model_from_state_dict


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state_dict from a ``torch.save`` file, loaded without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise WlmError(f"checkpoint {path} does not exist; check the path (the tutorial's file is "
                       "word_language_model_quantize.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(exc)
        if "GLOBAL" in reason:  # the safe loader refused an object: say so, it is the one thing worth knowing
            raise WlmError(f"checkpoint {path} was refused: it holds Python objects other than tensors, which could "
                           f"run code when loaded ({reason}). Save a plain state_dict with "
                           "torch.save(model.state_dict(), path)") from None
        reason = "it cannot be read: it is not a torch.save file of tensors"
        raise not_a_checkpoint(path, _plain_kind(path) or reason) from None
    except Exception as exc:  # noqa: BLE001 - whatever the reader trips on, the bytes are not a checkpoint
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



def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, or a header that parses into nonsense
        reason = _plain_kind(path) or f"it cannot be read as safetensors{short_reason(exc)}"
        raise not_a_checkpoint(path, reason) from None


def model_from_file(path: Path, read) -> LSTMModel:
    """``read(path)`` (whose errors are already the one-line kind) and the model its tensors form."""
    state = read(path)
    try:
        return model_from_state_dict(state, str(path))
    except WlmError as exc:  # wrong keys or shapes: the message says which; add what a checkpoint is
        raise WlmError(f"{exc}; {_CHECKPOINT_KINDS}") from None
    except Exception as exc:  # noqa: BLE001 - tensors of odd ranks or dtypes: not this model's checkpoint
        raise not_a_checkpoint(path, f"its tensors do not form the model{short_reason(exc)}") from None
