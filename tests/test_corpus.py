
import pytest
import torch

from wlm.corpus import (
    BUNDLED_DATA_DIR,
    KEEP_CACHED,
    OFFICIAL_SHA256,
    SPLITS,
    Corpus,
    Dictionary,
    batchify,
    get_batch,
    reference_ids,
    resolve_data_dir,
)
from wlm.errors import WlmError

from conftest import TINY_TEXT, write_corpus


def test_tiny_ids_match_reference(tiny_dir):
    corpus = Corpus(tiny_dir)
    dictionary, (train, valid, test) = reference_ids(tiny_dir)
    assert corpus.dictionary.idx2word == dictionary.idx2word
    assert torch.equal(corpus.train, train) and torch.equal(corpus.valid, valid) and torch.equal(corpus.test, test)
    assert corpus.dictionary.idx2word[:4] == ["the", "cat", "sat", "on"]
    assert corpus.dictionary.word2idx["zebra"] == len(corpus.dictionary) - 1  # first seen in test
    assert corpus.train.dtype == torch.int64


def test_crlf_gives_same_tokens(tmp_path):
    lf = Corpus(write_corpus(tmp_path / "lf"))
    crlf = Corpus(write_corpus(tmp_path / "crlf", newline="\r\n"))
    assert lf.dictionary == crlf.dictionary
    assert torch.equal(lf.train, crlf.train) and torch.equal(lf.test, crlf.test)


def test_missing_directory(tmp_path):
    with pytest.raises(WlmError, match="does not exist.*--data"):
        Corpus(tmp_path / "nowhere")


def test_missing_split(tmp_path):
    path = write_corpus(tmp_path / "c")
    (path / "valid.txt").unlink()
    with pytest.raises(WlmError, match="valid.txt is missing"):
        Corpus(path)


def test_empty_split(tmp_path):
    path = write_corpus(tmp_path / "c", {**TINY_TEXT, "test": "\n \n"})
    with pytest.raises(WlmError, match="test.txt has no words"):
        Corpus(path)


def test_not_utf8_names_the_file(tmp_path):
    path = write_corpus(tmp_path / "c")
    (path / "train.txt").write_bytes(b"caf\xe9 au lait\n")
    with pytest.raises(WlmError, match=r"train.txt is not UTF-8"):
        Corpus(path)


def test_env_var_is_used(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.setenv("WLM_DATA_DIR", str(tiny_dir))
    assert Corpus().path == tiny_dir


def test_batchify_and_get_batch():
    data = torch.arange(11)
    source = batchify(data, 2)
    assert source.shape == (5, 2)
    assert source[:, 0].tolist() == [0, 1, 2, 3, 4] and source[:, 1].tolist() == [5, 6, 7, 8, 9]
    x, y = get_batch(source, 3, bptt=25)
    assert x.tolist() == [[3, 8]] and y.tolist() == [4, 9]
    with pytest.raises(WlmError, match="batch size"):
        batchify(data, 0)


def test_encode_reports_unknown(tiny_corpus):
    dictionary = Dictionary(["<unk>", "the"])
    assert dictionary.encode(["the", "platypus"]) == ([1, 0], ["platypus"])
    with pytest.raises(WlmError, match="no <unk> token"):
        tiny_corpus.dictionary.encode(["the", "platypus"])


def test_real_counts_and_reference(real_dir, real_corpus):
    assert len(real_corpus.dictionary) == 33278
    assert (len(real_corpus.train), len(real_corpus.valid), len(real_corpus.test)) == (2088628, 217646, 245569)
    dictionary, (train, valid, test) = reference_ids(real_dir)
    fresh = Corpus(real_dir, cache=False)
    assert fresh.dictionary.idx2word == dictionary.idx2word
    assert torch.equal(fresh.train, train) and torch.equal(fresh.valid, valid) and torch.equal(fresh.test, test)
    # How fast each reads is for `python -m wlm corpus --reference` to report: one run's seconds decide nothing.


def test_a_second_load_reads_the_cache_file_and_does_not_split_again(tmp_path, monkeypatch, tiny_dir):
    """What makes a later load fast: it reads the cached ids back instead of splitting the text again."""
    import wlm.corpus as module

    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    splits, reads = [], []
    tokenise, read_cached = module._tokenise, module._read_cached
    monkeypatch.setattr(module, "_tokenise", lambda path, raw: splits.append(path) or tokenise(path, raw))
    monkeypatch.setattr(module, "_read_cached", lambda file: reads.append(file) or read_cached(file))
    first = Corpus(tiny_dir)
    assert len(splits) == 1 and reads == []  # nothing cached yet: the text is split, and the result written
    written = list((tmp_path / "cache" / "corpus").iterdir())
    assert len(written) == 1
    second = Corpus(tiny_dir)
    assert len(splits) == 1 and reads == written and second.from_cache  # read back, not split again
    assert _same(first, second)
    # An edited split is another text: it misses the cache, is split, and gets an entry of its own.
    (tiny_dir / "valid.txt").write_text("the cat ran\n")
    edited = Corpus(tiny_dir)
    assert len(splits) == 2 and reads == written and not edited.from_cache
    assert len(list((tmp_path / "cache" / "corpus").iterdir())) == 2
    # And the cache is only a speed-up: with cache=False the text is split every time, and no file is read.
    Corpus(tiny_dir, cache=False)
    assert len(splits) == 3 and reads == written


def test_lines_end_only_at_newlines(tmp_path):
    # A form feed or a Unicode line separator inside a line is whitespace, not a line break:
    # the tutorial's file iteration gives one <eos> per newline and no more.
    path = write_corpus(tmp_path / "c", {**TINY_TEXT, "valid": "the cat\x0csat\u2028on the mat\rthe dog\n"})
    corpus = Corpus(path, cache=False)
    dictionary, (_, valid, _) = reference_ids(path)
    assert corpus.dictionary == dictionary and torch.equal(corpus.valid, valid)
    assert corpus.valid.tolist().count(corpus.dictionary.word2idx["<eos>"]) == 2


def _same(a: Corpus, b: Corpus) -> bool:
    return (a.dictionary == b.dictionary and a.dictionary.word2idx == b.dictionary.word2idx
            and all(torch.equal(getattr(a, s), getattr(b, s)) for s in ("train", "valid", "test")))


def test_cache_gives_the_same_corpus(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    first, second = Corpus(tiny_dir), Corpus(tiny_dir)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert _same(first, second) and _same(second, Corpus(tiny_dir, cache=False))
    assert len(list((tmp_path / "cache" / "corpus").iterdir())) == 1


def test_cache_misses_when_the_text_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    path = write_corpus(tmp_path / "c")
    Corpus(path)
    (path / "test.txt").write_text("the platypus sat\n", encoding="utf-8")
    changed = Corpus(path)
    assert not changed.from_cache and changed.dictionary.idx2word[-1] == "platypus"


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    good = Corpus(tiny_dir)
    [entry] = (tmp_path / "cache" / "corpus").iterdir()
    entry.write_bytes(entry.read_bytes()[:200])  # truncated
    rebuilt = Corpus(tiny_dir)
    assert not rebuilt.from_cache and _same(good, rebuilt)
    assert Corpus(tiny_dir).from_cache  # and written again


def test_unwritable_cache_still_loads(tmp_path, monkeypatch, tiny_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WLM_CACHE_DIR", str(blocker))
    assert _same(Corpus(tiny_dir), Corpus(tiny_dir, cache=False))


def test_cache_keeps_only_the_latest_corpora(tmp_path, monkeypatch):
    monkeypatch.setenv("WLM_CACHE_DIR", str(tmp_path / "cache"))
    for n in range(KEEP_CACHED + 2):
        Corpus(write_corpus(tmp_path / f"c{n}", {**TINY_TEXT, "test": f"corpus number {n}\n"}))
    assert len(list((tmp_path / "cache" / "corpus").iterdir())) == KEEP_CACHED
    assert Corpus(tmp_path / f"c{KEEP_CACHED + 1}").from_cache and not Corpus(tmp_path / "c0").from_cache


def test_real_corpus_from_cache_is_identical(real_dir, real_corpus):
    cached = Corpus(real_dir)
    assert cached.from_cache and _same(cached, real_corpus)


# --- the bundled copy of Wikitext-2 and where a corpus is looked for ------------------------------------------------

def _readme_digests() -> dict[str, str]:
    import re

    text = (BUNDLED_DATA_DIR / "README.md").read_text()
    return {name: digest for name, digest in re.findall(r"\| (\w+)\.txt \|.*`([0-9a-f]{64})`", text)}


def test_bundled_files_are_the_official_splits():
    import hashlib

    assert _readme_digests() == OFFICIAL_SHA256
    for split in SPLITS:
        assert hashlib.sha256((BUNDLED_DATA_DIR / f"{split}.txt").read_bytes()).hexdigest() == OFFICIAL_SHA256[split]
    readme = " ".join((BUNDLED_DATA_DIR / "README.md").read_text().split())
    assert "Pointer Sentinel Mixture Models" in readme and "CC BY-SA 3.0" in readme


def test_bundled_ids_are_the_tutorials():
    corpus = Corpus(BUNDLED_DATA_DIR)
    assert len(corpus.dictionary) == 33278
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (2088628, 217646, 245569)
    assert corpus.edited_splits == [] and corpus.label == "Wikitext-2, bundled"


def test_search_order(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WLM_DATA_DIR", raising=False)
    assert resolve_data_dir() == BUNDLED_DATA_DIR  # nothing set, no ./data: the shipped copy
    local = write_corpus(tmp_path / "data" / "wikitext-2")
    assert resolve_data_dir().resolve() == local
    monkeypatch.setenv("WLM_DATA_DIR", str(tiny_dir))
    assert resolve_data_dir() == tiny_dir
    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"


def test_env_var_naming_nothing_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("WLM_DATA_DIR", str(tmp_path / "nowhere"))
    assert resolve_data_dir() == tmp_path / "nowhere"
    with pytest.raises(WlmError, match="nowhere does not exist.*WLM_DATA_DIR.*bundled"):
        Corpus()


def test_an_edited_copy_is_used_but_named(tmp_path):
    import shutil

    copy = tmp_path / "wt2"
    shutil.copytree(BUNDLED_DATA_DIR, copy)
    with open(copy / "test.txt", "r+b") as f:
        f.truncate(100_000)
    corpus = Corpus(copy)
    assert corpus.edited_splits == ["test"]
    assert corpus.label == f"Wikitext-2 with edited test.txt, from {copy}"
    assert len(corpus.test) < 245569 and len(corpus.train) == 2088628
    other = Corpus(write_corpus(tmp_path / "tiny"))
    assert other.edited_splits == list(SPLITS) and other.label.startswith("a corpus other than Wikitext-2")
