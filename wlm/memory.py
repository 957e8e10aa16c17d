"""Handing memory freed by large temporary tensors back to the operating system."""
from __future__ import annotations

import ctypes
import sys


def release_memory() -> None:
    """Give memory freed by large temporary tensors back to the operating system.

    Quantizing and evaluating make model-sized temporary copies. Their tensors are freed as soon as
    the last reference goes (no full garbage collection is needed: it costs ~0.1 s in a server
    with Streamlit, pandas and torch loaded), but glibc keeps the freed blocks in its heap, so a
    long-running server holding several variants would grow by hundreds of MB; ``malloc_trim``
    returns them. Elsewhere (no glibc) this does nothing.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # another C library (e.g. musl)
            pass
