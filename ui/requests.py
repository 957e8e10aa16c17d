"""What the app's cached functions are asked about: typed values that carry an object together with the identity
its cache key is made of, so that no caller can pair one model's key with another model.

``ui.backend`` hashes each of them by ``key`` alone (never by its tensors). ``Setup`` bundles them for the tabs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wlm.corpus import Corpus, Dictionary
from wlm.model import LoadedModel
from wlm.quantize import QuantSpec

SOURCE_KINDS = ("bundled", "path", "upload")


@dataclass(frozen=True, eq=False)
class ModelSource:
    """A float model and where it came from: the bundle or a file by its resolved path, or an upload by its name,
    size and Streamlit file id."""

    kind: str
    location: str
    loaded: LoadedModel

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.location}"

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def is_upload(self) -> bool:
        return self.kind == "upload"


@dataclass(frozen=True, eq=False)
class Variant:
    """A source's model quantized by ``spec`` (its float parts shared with the source's model)."""

    source: ModelSource
    spec: QuantSpec
    quantized: nn.Module

    @property
    def key(self) -> tuple[str, QuantSpec]:
        return self.source.key, self.spec


@dataclass(frozen=True, eq=False)
class CorpusSource:
    """A corpus read from ``path`` (its resolved folder); its test split is what measurements score."""

    path: str
    corpus: Corpus

    @property
    def key(self) -> str:
        return self.path

    @property
    def ids(self) -> torch.Tensor:
        return self.corpus.test


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The words a model's ids stand for, and where they came from: the model's own file (``source:...``) or,
    for a bare .pth, the corpus it matches (``corpus:...``)."""

    key: str
    dictionary: Dictionary

    @classmethod
    def of_source(cls, source: ModelSource, dictionary: Dictionary) -> Vocabulary:
        return cls(f"source:{source.key}", dictionary)

    @classmethod
    def of_corpus(cls, corpus: CorpusSource) -> Vocabulary:
        return cls(f"corpus:{corpus.key}", corpus.corpus.dictionary)


@dataclass(frozen=True)
class Setup:
    """What every tab works on. ``ui.setup.resolve_setup`` builds it; ``with_corpus`` adds what the corpus
    allows."""

    variant: Variant
    threads: int
    seed: int
    vocabulary: Vocabulary | None = None  # None: text needs words this model does not bring
    corpus: CorpusSource | None = None  # the corpus found, whatever vocabulary it has
    split: CorpusSource | None = None  # the same corpus, when it matches the model's vocabulary
    missing: str = ""  # why corpus-based measurements are off ('' when they are on)
    hosted: bool = False  # a shared server: bounded measurements (see wlm.hosting)

    @property
    def source(self) -> ModelSource:
        return self.variant.source

    @property
    def loaded(self) -> LoadedModel:
        return self.source.loaded

    @property
    def model(self) -> nn.Module:
        return self.source.model

    @property
    def spec(self) -> QuantSpec:
        return self.variant.spec

    @property
    def quantized(self) -> nn.Module:
        return self.variant.quantized

    @property
    def dictionary(self) -> Dictionary | None:
        return None if self.vocabulary is None else self.vocabulary.dictionary

    @property
    def test_ids(self) -> torch.Tensor | None:
        return None if self.split is None else self.split.ids
