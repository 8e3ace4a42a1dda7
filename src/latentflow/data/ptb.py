"""Penn Treebank at the character level, read from Mikolov's char files (paper Section 6).

`ptb/ptb.char.{split}.txt` holds one sentence per line; its tokens are `line.split()`: single
characters, with `_` for the space between words and `<unk>` spelled `< u n k >`. No end token
is added. The vocabulary is built from train only: 49 symbols + `<pad>` + `<unk>` = 51 (the
paper's V). A valid/test character absent from train maps to `<unk>` (id 1), with one logged
warning giving the count per file.

Length filter (paper, footnote 2: sentences "of length less than 288 tokens"): a sentence of T
tokens is kept when T < max_length (default 288). `max_length=289` gives the reference code's
rule, T <= 288. Train sentences at or over the limit are always dropped (the count is logged);
valid/test follow `eval_long`: "drop" (default, as the reference code does, which scores 3,735
of the 3,761 test sentences) or "keep" (score every sentence).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentflow.data.download import (
    KNOWN_SHA256,
    ensure_downloaded,
    missing_error,
    verify_file,
    write_atomic,
)
from latentflow.data.errors import DataError
from latentflow.data.splits import SPLITS
from latentflow.data.text_dataset import TextDataset, encode_sentences
from latentflow.data.text_reader import read_text
from latentflow.data.vocab import CharVocab

log = logging.getLogger(__name__)

WORD_TRAIN = "ptb/ptb.train.txt"
EVAL_LONG = ("drop", "keep")
ENCODING = "UTF-8"


def char_file(split: str) -> str:
    """Path of a split's char file, relative to the data root."""
    return f"ptb/ptb.char.{split}.txt"


def chars_from_words(word_text: str) -> str:
    """Mikolov's char file from a word file's text (his simple-examples conversion: characters
    separated by spaces, '_' between words)."""
    text = "".join(line.strip().replace(" ", "_") + "\n" for line in word_text.split("\n")[:-1])
    return " ".join(text) + " " if text else ""  # each character followed by one space


def build_char_file(word_path: Path, char_path: Path, sha256: str | None) -> None:
    """Write `char_path` from the word file `word_path`, verified and atomically."""
    word_text = read_ptb_text(word_path)

    def write(tmp: Path) -> None:
        tmp.write_text(chars_from_words(word_text), encoding="ascii", newline="")

    write_atomic(char_path, write, sha256, what=f"rebuilt from {word_path}")


def prepare_ptb(
    root: Path,
    download: bool = True,
    base_url: str | None = None,
    checksums: Mapping[str, str] = KNOWN_SHA256,
    verify: bool = True,
) -> None:
    """Make sure the three char files are under `root`, fetching what is missing; with
    `verify`, files already there are checked against their known SHA-256 (once per file).

    valid/test are downloaded; train is rebuilt from the downloaded word file `ptb.train.txt`
    (the char train file is byte-identical to Mikolov's, so its checksum is checked too).
    """
    missing = [char_file(s) for s in SPLITS if not (root / char_file(s)).exists()]
    if verify:
        for split in SPLITS:
            rel = char_file(split)
            if rel not in missing:
                verify_file(root / rel, rel, checksums)
    if not missing:
        return
    if not download:
        raise missing_error(root, missing, reason="data.download is off")
    for rel in missing:
        if rel == char_file("train"):
            word_path = ensure_downloaded(root, WORD_TRAIN, base_url, checksums)
            build_char_file(word_path, root / rel, checksums.get(rel))
        else:
            ensure_downloaded(root, rel, base_url, checksums)


def read_ptb_text(path: Path) -> str:
    """The text of a PTB file (UTF-8); one cut short (its last line unended) is a DataError."""
    text = read_text(path, ENCODING)
    # Every line ends with a newline (Mikolov's char files add a space after it): a file that
    # stops mid-line was cut short.
    if not text.rstrip(" ").endswith("\n"):
        raise DataError(f"{path}: truncated file (the last line has no newline)")
    return text


def read_sentences(path: Path) -> tuple[list[list[str]], list[int]]:
    """Token lists of the non-empty lines of a char file, and their 0-based line numbers."""
    lines = read_ptb_text(path).split("\n")[:-1]  # the text after the last newline is blank
    sentences, line_numbers = [], []
    for number, line in enumerate(lines):
        tokens = line.split()
        if tokens:
            sentences.append(tokens)
            line_numbers.append(number)
    if len(sentences) < len(lines):
        log.warning("%s: skipped %d empty lines", path, len(lines) - len(sentences))
    return sentences, line_numbers


@dataclass
class PTBData:
    """Everything `load_ptb` reads: vocabulary, datasets and what was dropped or unknown."""

    vocab: CharVocab
    datasets: dict[str, TextDataset]
    lines: dict[str, int] = field(default_factory=dict)  # sentences in the file
    dropped: dict[str, int] = field(default_factory=dict)  # removed by the length filter
    oov: dict[str, int] = field(default_factory=dict)  # characters mapped to <unk>


def load_ptb(
    root: Path,
    max_length: int = 288,
    eval_long: str = "drop",
    limit_sequences: int | None = None,
) -> PTBData:
    """Read and encode the three splits under `root` (the vocabulary from all of train).

    `limit_sequences` keeps the first N sentences of each split after the length filter.
    """
    if eval_long not in EVAL_LONG:
        raise DataError(f"data.eval_long must be 'drop' or 'keep', got {eval_long!r}")
    missing = [char_file(s) for s in SPLITS if not (root / char_file(s)).exists()]
    if missing:
        raise missing_error(root, missing, reason="run prepare_data() with data.download on")
    raw = {split: read_sentences(root / char_file(split)) for split in SPLITS}
    vocab = CharVocab.build(raw["train"][0])
    data = PTBData(vocab=vocab, datasets={})
    for split in SPLITS:
        path = root / char_file(split)
        sentences, line_numbers = raw[split]
        data.lines[split] = len(sentences)
        ids, offsets, oov = encode_sentences(sentences, vocab)
        data.oov[split] = oov
        if oov:
            log.warning(
                "%s: %d characters not in the train vocabulary were mapped to <unk> (id %d)",
                path,
                oov,
                CharVocab.UNK,
            )
        dataset = TextDataset(ids, offsets, np.asarray(line_numbers), str(path))
        if split == "train" or eval_long == "drop":
            dataset, dropped = _filter_short(dataset, max_length)
            data.dropped[split] = dropped
            if dropped:
                log.info(
                    "%s: dropped %d of %d sentences with length >= data.max_length=%d",
                    path,
                    dropped,
                    data.lines[split],
                    max_length,
                )
        else:
            data.dropped[split] = 0
        if limit_sequences is not None:
            dataset = dataset.head(limit_sequences)
        data.datasets[split] = dataset
    return data


def _filter_short(dataset: TextDataset, max_length: int) -> tuple[TextDataset, int]:
    """Keep the sentences with T < max_length; also return how many were dropped."""
    keep = dataset.lengths < max_length  # [N]
    dropped = int((~keep).sum())
    if not dropped:
        return dataset, 0
    token_keep = np.repeat(keep, dataset.lengths)  # [total]
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(dataset.lengths[keep], out=offsets[1:])
    ids = dataset.ids.numpy()[token_keep]
    return TextDataset(ids, offsets, dataset.line_numbers[keep], dataset.path), dropped
