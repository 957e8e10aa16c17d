"""A set of named files handed to the user: written into the folder ``--out`` names, or packed as one zip (the
app's downloads). Every way writing can fail is one ``WlmError`` that names the path and what to do.

``write_atomically`` is the one way wlm replaces a file whole: these files, the cache's entries and a training
run's resume checkpoint."""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Callable

from .errors import WlmError

# A file's contents: bytes, or a file on disk to copy (an ONNX model is too big to hold twice).
Contents = bytes | Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(partial)`` on a temporary name beside ``path``, then rename it over ``path``.

    A reader never sees half a file, an interrupted write leaves the previous file (or none) in place, and two
    writers of the same path (sessions, threads or processes) do not corrupt each other's output: the last
    complete one wins. The temporary name is unique to this call and starts with a dot (the cache's ``prune``
    leaves such files alone); ``write`` creates the file, so it gets the usual permissions (the umask's).
    """
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:16]}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _write(target: Path, contents: Contents) -> None:
    if isinstance(contents, Path):
        shutil.copyfile(contents, target)
    else:
        target.write_bytes(contents)


def _file_in_the_way(folder: Path) -> Path | None:
    """The closest existing ancestor of ``folder`` (or itself) that is not a folder."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def prepare_folder(out: str | Path, option: str = "--out", names: tuple[str, ...] = ()) -> Path:
    """The folder ``out``, created if missing, where files ``names`` can be written; a command calls it before its
    slow work, so that a mistyped ``--out`` fails at once."""
    folder = Path(out)
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise WlmError(f"{option} {folder}: {blocker} is a file, not a folder; name a folder (it is created if "
                       "missing) or move the file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WlmError(f"{option} {folder}: cannot create that folder ({exc.strerror or exc}); choose one you can "
                       "write to") from None
    try:
        with tempfile.TemporaryFile(dir=folder):  # an existing folder may still refuse new files
            pass
    except OSError as exc:
        raise WlmError(f"{option} {folder}: cannot write into that folder ({exc.strerror or exc}); choose one you "
                       "can write to") from None
    for name in names:
        if (folder / name).is_dir():
            raise WlmError(f"{option} {folder}: a folder {folder / name} is in the way of the file {name}; move it "
                           "or choose another folder")
    return folder


def write_files(out: str | Path, files: dict[str, Contents], option: str = "--out") -> list[Path]:
    """Write ``files`` ({name: contents}) into the folder ``out``, created if missing; returns their paths.

    A file of the same name is replaced, each one whole, so an interrupted export leaves the previous file rather
    than half a new one."""
    folder = prepare_folder(out, option, tuple(files))  # every name checked before any file is written
    targets = {name: folder / name for name in files}
    for name, target in targets.items():
        try:
            write_atomically(target, lambda partial, name=name: _write(partial, files[name]))
        except OSError as exc:
            raise WlmError(f"{option} {folder}: cannot write {target.name} there ({exc.strerror or exc}); choose a "
                           "folder you can write to") from None
    return list(targets.values())


def zip_bytes(files: dict[str, Contents], folder: str = "") -> bytes:
    """``files`` as a zip, inside one ``folder`` (so that unpacking it does not scatter them) or, without one, at
    its top level (files meant to be unpacked into a folder the user already has)."""
    buffer = io.BytesIO()
    # Level 1: an int8 model shrinks by a quarter in about 2 s; higher levels save little more, much slower.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, contents in files.items():
            entry = f"{folder}/{name}" if folder else name
            if isinstance(contents, Path):
                archive.write(contents, entry)
            else:
                archive.writestr(entry, contents)
    return buffer.getvalue()
