"""Step 2: the corpus read the tutorial's way, and its first line as words and as ids."""
from __future__ import annotations

TITLE = "Load the data"
READS = ("corpus",)
GIVES = ("eos", "line")
SHOWS = "printed"
EXPLAIN = ("The corpus is read the tutorial's way: each line becomes its words followed by `<eos>`, and each word "
           "gets an id in the order words first appear. A split is then one long row of ids.")


def lesson(corpus):
    vocab = corpus.dictionary
    print(f"{len(vocab):,} words in the vocabulary")
    for split in ("train", "valid", "test"):
        print(f"{split}: {len(getattr(corpus, split)):,} tokens")
    eos = vocab.word2idx["<eos>"]
    ids = corpus.test[:200].tolist()
    # the first line that has words, as words and as ids
    start = next(i for i, t in enumerate(ids) if t != eos)
    line = ids[start:ids.index(eos, start) + 1]
    print([vocab.idx2word[i] for i in line])
    print(line)
    return {"eos": eos, "line": line}


def notice(values: dict) -> str:
    corpus, line = values["corpus"], values["line"]
    return (f"Every word became an id and every line ends with <eos> (id {values['eos']:,}): the test split is "
            f"{len(corpus.test):,} ids in a row, and its first line with words is {len(line)} of them.")
