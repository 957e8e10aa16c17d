"""The on-disk cache: derived files that are slow to make and cheap to read back.

Entries are keyed by a hash of what they were made from, so a changed input simply misses; each
kind of entry keeps only its most recently used few, so the cache does not grow without bound.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    """$WLM_CACHE_DIR, else ~/.cache/wlm."""
    env = os.environ.get("WLM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "wlm"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it into place.

    A reader never sees half a file, and two sessions or processes making the same entry do not
    corrupt each other's output: the last complete one wins.
    """
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def touch(path: Path) -> None:
    """Mark an entry as just used (its modification time orders ``prune``)."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recently used entries (files or folders) of ``folder``.

    Temporary files of writes in progress are left alone. Returns what was deleted; entries that
    cannot be deleted (another process, permissions) are skipped, since a cache must never fail its user.
    """
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []

    def last_used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    removed = []
    for path in sorted(entries, key=last_used, reverse=True)[keep:]:
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
