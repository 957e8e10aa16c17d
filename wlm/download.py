"""Fetching Wikitext-2 (word level) where a network exists.

The archive's only published digest is an MD5, so what we verify with sha256 is each
extracted split: the three files must be byte-identical to the official ones. Nothing is
left behind unless every check passes; the target folder appears in one rename.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .corpus import DEFAULT_DATA_DIR
from .corpus import OFFICIAL_SHA256 as SHA256
from .errors import WlmError

URLS = (
    "https://wikitext.smerity.com/wikitext-2-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
)
MEMBERS = {"train": "wikitext-2/wiki.train.tokens", "valid": "wikitext-2/wiki.valid.tokens",
           "test": "wikitext-2/wiki.test.tokens"}


def _fetch(url: str, target: Path, progress: bool) -> None:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="wikitext-2", disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WlmError(f"could not download {url} ({getattr(exc, 'reason', exc)}). Without a network, copy "
                       "train.txt, valid.txt and test.txt of Wikitext-2 into a folder and pass --data DIR "
                       "or set WLM_DATA_DIR") from None


def download(dest: str | os.PathLike = DEFAULT_DATA_DIR, *, urls: tuple[str, ...] = URLS,
             sha256: dict[str, str] | None = None, progress: bool = True, force: bool = False) -> Path:
    """Download and unpack Wikitext-2 into ``dest`` as train.txt, valid.txt and test.txt."""
    dest = Path(dest)
    sha256 = SHA256 if sha256 is None else sha256
    if dest.exists() and not force:
        if all((dest / f"{s}.txt").is_file() for s in MEMBERS):
            return dest
        raise WlmError(f"{dest} exists but does not hold train.txt, valid.txt and test.txt; remove it or pass --force")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".wikitext-2-", dir=dest.parent))
    try:
        archive = work / "archive.zip"
        errors = []
        for url in urls:
            try:
                _fetch(url, archive, progress)
                break
            except WlmError as exc:
                errors.append(str(exc))
        else:
            raise WlmError(errors[-1] if len(errors) == 1 else " | ".join(errors))
        unpacked = work / "wikitext-2"
        unpacked.mkdir()
        try:
            with zipfile.ZipFile(archive) as zf:
                for split, member in MEMBERS.items():
                    data = zf.read(member)
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != sha256[split]:
                        raise WlmError(f"downloaded {member} has sha256 {digest[:16]}…, expected "
                                       f"{sha256[split][:16]}…; the download is damaged or not Wikitext-2 — try again")
                    (unpacked / f"{split}.txt").write_bytes(data)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WlmError(f"the downloaded archive is not the Wikitext-2 zip ({exc}); try again") from None
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(unpacked, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
