"""The on-disk cache: derived files that are slow to make and cheap to read back.

Entries are keyed by a hash of what they were made from, so a changed input simply misses; each
kind of entry keeps only its most recently used few, so the cache does not grow without bound.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

IN_USE = ".in-use"  # inside an entry folder: held (shared) by whoever writes or reads the entry


def cache_root() -> Path:
    """$WLM_CACHE_DIR, else ~/.cache/wlm."""
    env = os.environ.get("WLM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "wlm"


def touch(path: Path) -> None:
    """Mark an entry as just used (its modification time orders ``prune``)."""
    try:
        os.utime(path)
    except OSError:
        pass


@contextlib.contextmanager
def in_use(entry: Path) -> Iterator[Path]:
    """Create the entry folder if needed and keep ``prune`` from deleting it for the block.

    A shared lock on the folder's ``.in-use`` file: any number of sessions, and processes (servers sharing one
    cache), may use an entry at once, while ``prune`` deletes only entries whose lock it can take exclusively.
    If a prune removed the folder between its creation and the lock, it is created again.
    """
    for _ in range(5):
        entry.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(entry / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # pruned just now
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            same = os.fstat(fd).st_ino == os.stat(entry / IN_USE).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a file a prune has since deleted: start over
    else:
        raise OSError(f"the cache entry {entry} keeps being deleted while it is being created")
    try:
        yield entry
    finally:
        os.close(fd)


def _lock_if_unused(entry: Path) -> int | None:
    """An exclusive lock on a folder entry nobody is using (its file descriptor), or None if it is in use."""
    try:
        fd = os.open(entry / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recently used entries (files or folders) of ``folder``.

    Temporary files of writes in progress and folders in use (``in_use``) are left alone. Returns what was
    deleted; entries that cannot be deleted (another process, permissions) are skipped, since a cache must never
    fail its user.
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
        lock = _lock_if_unused(path) if path.is_dir() else None
        if path.is_dir() and lock is None:
            continue  # someone is exporting into it or loading it
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        except OSError:
            pass
        finally:
            if lock is not None:
                os.close(lock)
    return removed
