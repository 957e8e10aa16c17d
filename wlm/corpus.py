"""Word-level corpus: the tutorial's tokenisation and id order, read fast.

Each line becomes ``line.split() + ['<eos>']``; ids are handed out in order of first
appearance over train, then valid, then test. That order is what makes a checkpoint
trained on this corpus line up with its vocabulary, so it must never change.

Splitting 2 M words takes most of a second, so the ids and vocabulary are also kept in the
on-disk cache, keyed by a hash of the three files' bytes: later loads of the same text read them back.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .assets import ASSETS_DIR, CORPUS_FOLDER
from .cache import cache_root, prune, touch
from .errors import WlmError
from .out_files import write_atomically

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
DEFAULT_DATA_DIR = Path("data") / "wikitext-2"
# The copy shipped with the project, so that every command and tab works offline on a fresh clone.
BUNDLED_DATA_DIR = ASSETS_DIR / CORPUS_FOLDER
# The official Wikitext-2 splits (wiki.*.tokens of wikitext-2-v1): the README's figures were measured on these bytes.
OFFICIAL_SHA256 = {
    "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}


class Dictionary:
    def __init__(self, words: list[str] | None = None):
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []
        for word in words or []:
            self.add_word(word)

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.idx2word == other.idx2word

    def encode(self, words: list[str], *, strict: bool = True) -> tuple[list[int], list[str]]:
        """Ids for ``words``; words not in the vocabulary map to ``<unk>`` and are returned.

        A vocabulary without ``<unk>`` refuses them, or, with ``strict=False``, gives None for each."""
        unknown = [w for w in words if w not in self.word2idx]
        if strict and unknown and UNK not in self.word2idx:
            raise WlmError(f"words {unknown[:5]} are not in the vocabulary, which has no {UNK} token")
        unk = self.word2idx.get(UNK)
        return [self.word2idx.get(w, unk) for w in words], unknown

    def encode_prompt(self, prompt: str | None, *, strict: bool = True) -> tuple[list[int], list[str]]:
        """Ids for the words of ``prompt`` (split on any whitespace: a line break in a prompt is a space) and the
        words that were not in the vocabulary (they become ``<unk>``, as in ``encode``); an empty or missing prompt
        gives no ids."""
        return self.encode((prompt or "").split(), strict=strict)

    def first_known(self, *candidates: str) -> str:
        """The first candidate text whose words are all in the vocabulary, else the vocabulary's first word (a
        default prompt that any vocabulary, even a tiny test corpus's, can read)."""
        for text in candidates:
            if all(w in self.word2idx for w in text.split()):
                return text
        return self.idx2word[0]


def resolve_data_dir(data: str | os.PathLike | None = None) -> Path:
    """Where the corpus lives: the argument, then $WLM_DATA_DIR, then ./data/wikitext-2, then the bundled copy.

    An explicit choice is returned even when it does not exist, so that a mistyped path is reported, never replaced.
    """
    if data:
        return Path(data)
    env = os.environ.get("WLM_DATA_DIR")
    if env:
        return Path(env)
    return DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else BUNDLED_DATA_DIR


def is_bundled(path: str | os.PathLike) -> bool:
    try:
        return Path(path).resolve() == BUNDLED_DATA_DIR
    except OSError:
        return False


# Bump when tokenisation or the cached layout changes, so older cache entries are not reused.
CACHE_FORMAT = b"wlm-corpus-1"
KEEP_CACHED = 4  # corpora kept in the cache (Wikitext-2 takes 20 MB)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise WlmError(
            f"corpus file {path} is missing: a corpus directory needs train.txt, valid.txt and test.txt "
            "(point --data or WLM_DATA_DIR at one, or leave both unset to use the bundled Wikitext-2)"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WlmError(f"corpus file {path} cannot be read ({exc})") from None


def _words(path: Path, raw: bytes) -> list[str]:
    try:
        # Universal newlines, as a text-mode read (the tutorial's): CRLF and a lone CR end a line.
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise WlmError(f"{path} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a trailing newline ends the last line; it does not start another (as file iteration)
    words: list[str] = []
    for line in lines:
        words.extend(line.split())
        words.append(EOS)
    if not words or all(w == EOS for w in words):
        raise WlmError(f"corpus file {path} has no words; each split needs at least one line of text")
    return words


def _tokenise(path: Path, raw: dict[str, bytes]) -> tuple[Dictionary, dict[str, torch.Tensor]]:
    dictionary = Dictionary()
    word2idx = dictionary.word2idx
    ids: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        words = _words(path / f"{split}.txt", raw[split])
        # setdefault evaluates len() before inserting, so a new word gets the next id.
        ids[split] = torch.tensor([word2idx.setdefault(w, len(word2idx)) for w in words], dtype=torch.int64)
    dictionary.idx2word = list(word2idx)
    return dictionary, ids


def _cache_file(sha256: dict[str, str]) -> Path:
    digest = hashlib.sha256(CACHE_FORMAT)
    for split in SPLITS:
        digest.update(f"|{split}|{sha256[split]}|".encode())
    return cache_root() / "corpus" / f"{digest.hexdigest()[:32]}.safetensors"


def _read_cached(file: Path) -> tuple[Dictionary, dict[str, torch.Tensor]] | None:
    """The cached ids and vocabulary, or None when absent or not as written (then they are rebuilt)."""
    try:
        with safe_open(file, framework="pt") as f:
            words = (f.metadata() or {})["vocab"].split("\n")
            ids = {split: f.get_tensor(split) for split in SPLITS}
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError):
        return None
    if not all(t.dtype == torch.int64 and t.dim() == 1 and t.numel() > 0 and 0 <= int(t.min()) and
               int(t.max()) < len(words) for t in ids.values()):
        return None
    dictionary = Dictionary()
    dictionary.idx2word = words
    dictionary.word2idx = {w: i for i, w in enumerate(words)}
    return dictionary, ids


def _write_cached(file: Path, dictionary: Dictionary, ids: dict[str, torch.Tensor]) -> None:
    # A cache that cannot be written (read-only home, full disk) only costs the next load its speed.
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(file, lambda tmp: save_file(ids, tmp, metadata={"vocab": "\n".join(dictionary.idx2word)}))
        prune(file.parent, KEEP_CACHED)
    except OSError:
        pass


class Corpus:
    """Train/valid/test as int64 id tensors plus the shared ``Dictionary``.

    ``cache=False`` always splits the text (and neither reads nor writes the on-disk cache).
    """

    def __init__(self, path: str | os.PathLike | None = None, cache: bool = True):
        self.path = resolve_data_dir(path)
        if not self.path.is_dir():
            raise WlmError(
                f"corpus directory {self.path} does not exist; point --data or WLM_DATA_DIR at a folder with "
                "train.txt, valid.txt and test.txt, or leave both unset to use the bundled Wikitext-2"
            )
        raw = {split: _read_bytes(self.path / f"{split}.txt") for split in SPLITS}
        self.sha256 = {split: hashlib.sha256(raw[split]).hexdigest() for split in SPLITS}
        file = _cache_file(self.sha256) if cache else None
        loaded = _read_cached(file) if file is not None and file.is_file() else None
        self.from_cache = loaded is not None
        if loaded is None:
            loaded = _tokenise(self.path, raw)
            if file is not None:
                _write_cached(file, *loaded)
        else:
            touch(file)
        self.dictionary, ids = loaded
        self.train, self.valid, self.test = ids["train"], ids["valid"], ids["test"]

    @property
    def edited_splits(self) -> list[str]:
        """The splits whose bytes differ from the official Wikitext-2 files (all three for another corpus)."""
        return [split for split in SPLITS if self.sha256[split] != OFFICIAL_SHA256[split]]

    @property
    def label(self) -> str:
        """What a page or a log line calls this corpus: which text it is, and where it was found."""
        edited = self.edited_splits
        if not edited:
            name = "Wikitext-2"
        elif len(edited) < len(SPLITS):
            name = f"Wikitext-2 with edited {', '.join(f'{s}.txt' for s in edited)}"
        else:
            name = "a corpus other than Wikitext-2"
        return f"{name}, bundled" if is_bundled(self.path) else f"{name}, from {self.path}"

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise WlmError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)


def reference_ids(path: str | os.PathLike) -> tuple[Dictionary, list[torch.Tensor]]:
    """The tutorial's algorithm written out plainly (two passes per file, one tensor per line).

    Kept as the definition that ``Corpus`` must reproduce id for id, and as the baseline its speed is
    measured against; nothing else uses it.
    """
    path = Path(path)
    dictionary = Dictionary()
    splits = []
    for split in SPLITS:
        with open(path / f"{split}.txt", encoding="utf8") as f:
            for line in f:
                for word in line.split() + [EOS]:
                    dictionary.add_word(word)
        with open(path / f"{split}.txt", encoding="utf8") as f:
            lines = [torch.tensor([dictionary.word2idx[w] for w in line.split() + [EOS]], dtype=torch.int64)
                     for line in f]
        splits.append(torch.cat(lines))
    return dictionary, splits


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """[N] ids -> [N // bsz, bsz]: ``bsz`` parallel streams, the tail that does not fit dropped."""
    if bsz < 1:
        raise WlmError(f"batch size must be at least 1, got {bsz}")
    nbatch = data.size(0) // bsz
    if nbatch < 2:
        raise WlmError(f"{data.size(0)} tokens are too few for batch size {bsz}; use a smaller batch")
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``source[i:i+L]`` and next-word targets, flattened; L is ``bptt`` or what is left."""
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)
