"""Which of torch's quantized engines packs int8 weights, for the length of a block.

``torch.backends.quantized.engine`` is one setting for the whole process. It matters when weights are packed
(``quantize_dynamic`` calls ``quantized::linear_prepack``): the packed object is the engine's own (fbgemm's,
onednn's or qnnpack's), and from then on the model runs that engine's kernels whatever the setting says (measured
with torch 2.13: a model packed under qnnpack gives qnnpack's outputs under every engine). ``quantized_engine``
switches it for a block and restores the engine it found, even when the block fails; blocks in different
threads run one after the other, so none restores an engine another block set.

Every quantizing in wlm packs inside ``packing()``: under the engine its own thread chose (inside a
``quantized_engine`` block), else under the process's default engine, whatever another thread's block has
switched to. A sweep in one visitor's session therefore never hands another visitor's variant (a page's, the
Walkthrough's step 5) a foreign engine's weights. Since the packing fixes the kernels, a block need only hold the
engine while it quantizes; the timings after it run the packed model whatever the setting is.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator

import torch

from .errors import WlmError

_BLOCK = threading.RLock()  # one block at a time in the process; the same thread may nest
_CHOSEN = threading.local()  # .engine: the engine this thread's innermost block chose
DEFAULT_ENGINE = torch.backends.quantized.engine  # what torch chose for this CPU when wlm was imported


def available_engines() -> list[str]:
    """The quantized engines this build of torch offers on this CPU, in torch's order ('none' left out)."""
    return [name for name in torch.backends.quantized.supported_engines if name != "none"]


def check_engine(name: str) -> str:
    engines = available_engines()
    if name not in engines:
        raise WlmError(f"quantized engine {name!r} is not available on this CPU; this torch offers "
                       f"{', '.join(engines) or 'none'} (leave out --engines to time every one of them)")
    return name


def parse_engines(names: str | Iterable[str] | None) -> list[str]:
    """Engine names (comma-separated or a list), each checked, duplicates dropped; None or '' means all."""
    if names is None or (isinstance(names, str) and not names.strip()):
        return available_engines()
    if isinstance(names, str):
        names = names.split(",")
    chosen = [check_engine(n.strip()) for n in names if n.strip()]
    if not chosen:
        raise WlmError(f"no quantized engine named; choose from {', '.join(available_engines())}")
    return list(dict.fromkeys(chosen))


def current_engine() -> str:
    return torch.backends.quantized.engine


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[str]:
    """Run the block with ``torch.backends.quantized.engine = name``, then restore the engine found."""
    check_engine(name)
    with _BLOCK:
        previous, outer = torch.backends.quantized.engine, getattr(_CHOSEN, "engine", None)
        torch.backends.quantized.engine = _CHOSEN.engine = name
        try:
            yield name
        finally:
            torch.backends.quantized.engine, _CHOSEN.engine = previous, outer


@contextlib.contextmanager
def packing() -> Iterator[str]:
    """Pack weights under the engine this thread chose, else under the default one (see the module's note)."""
    with quantized_engine(getattr(_CHOSEN, "engine", None) or DEFAULT_ENGINE) as name:
        yield name
