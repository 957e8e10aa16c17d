"""Where the bundled model and corpus live: the repository's ``assets/`` folder, or the copy inside the package.

A clone (or ``pip install -e .``) reads ``assets/`` beside the package; ``pip install .`` copies that folder into
the installed package as ``wlm/bundled`` (pyproject.toml maps it), so the ``wlm`` command finds the model and the
corpus from any folder.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
INSTALLED_ASSETS = _PACKAGE / "bundled"  # only in an installed wheel: a clone has no such folder
REPOSITORY_ASSETS = _PACKAGE.parent / "assets"
ASSETS_DIR = INSTALLED_ASSETS if INSTALLED_ASSETS.is_dir() else REPOSITORY_ASSETS
MODEL_FOLDER, CORPUS_FOLDER = "wlm-lstm", "wikitext-2"
