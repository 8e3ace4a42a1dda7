"""Your own text: any corpus as sequences of characters or words (``data=text_file``).

One sequence per line (``unit=line``) or per paragraph (``unit=paragraph``: blocks separated by
blank lines, their line breaks kept as a "\\n" token). Either three files (``train``, ``valid``,
``test``) or one (``path``) split by unit with a seeded shuffle (``split``, ``seed``). Tokens are
characters (``tokenizer=char``, the space a token like any other) or whitespace-separated words
(``tokenizer=word``, the ``vocab_size`` most frequent kept and the rest ``<unk>``). The
vocabulary comes from the training split only (``<pad>`` = 0, ``<unk>`` = 1, then the symbols
sorted) and is stored in the checkpoint; sampling writes text in the same tokenization
(``detokenize``).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentflow.data.base import BucketedDataModule, LoaderSettings
from latentflow.data.batching import collate_text
from latentflow.data.checks import check_count
from latentflow.data.errors import DataError
from latentflow.data.lengths import LengthDistribution, fit_length_distribution
from latentflow.data.splits import SPLITS, check_split, deal_splits
from latentflow.data.text_dataset import TextDataset, encode_sentences
from latentflow.data.text_reader import read_text
from latentflow.data.vocab import PAD_TOKEN, UNK_TOKEN, CharVocab, detokenize  # noqa: F401

log = logging.getLogger(__name__)
UNITS = ("line", "paragraph")
TOKENIZERS = ("char", "word")
NEWLINE = "\n"
ENCODING_HINT = " (set data.encoding=..., e.g. latin-1)"


def units_of(text: str, unit: str) -> list[str]:
    """The sequences of a text: its non-empty lines, or its paragraphs."""
    if unit == "line":
        return [line.strip() for line in text.splitlines() if line.strip()]
    paragraphs, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(NEWLINE.join(current))
            current = []
    if current:
        paragraphs.append(NEWLINE.join(current))
    return paragraphs


def tokenize(unit: str, tokenizer: str) -> list[str]:
    if tokenizer == "char":
        return list(unit)
    return [t for line in unit.split(NEWLINE) for t in (*line.split(), NEWLINE)][:-1]


def build_vocab(sentences: Sequence[Sequence[str]], vocab_size: int | None) -> CharVocab:
    """``<pad>``, ``<unk>``, then the ``vocab_size`` most frequent tokens (all when None),
    sorted; ties broken by the token."""
    counts = Counter(t for s in sentences for t in s)
    counts.pop(PAD_TOKEN, None)
    counts.pop(UNK_TOKEN, None)
    kept = sorted(counts, key=lambda t: (-counts[t], t))
    if vocab_size is not None:
        kept = kept[:vocab_size]
    return CharVocab([PAD_TOKEN, UNK_TOKEN, *sorted(kept)])


class TextFileDataModule(BucketedDataModule):
    """Text files of your own as token sequences (module docstring).

    Args:
        path: one file, split into train/valid/test by ``split`` (by unit, seeded).
        train, valid, test: three files instead of ``path``.
        split: train/valid/test ratios for ``path`` (three numbers summing to 1).
        unit: ``line`` (one sequence per non-empty line) or ``paragraph``.
        tokenizer: ``char`` or ``word``.
        vocab_size: with ``word``: keep the most frequent words of train (None: all).
        max_length: keep sequences of at most this many tokens (None: all); the count
            dropped per split is logged.
        encoding: the files' text encoding.
        Others as in ``PTBCharDataModule``.

    After ``setup()``: ``vocab``, ``num_features`` = len(vocab), and p(T), the add-one
    smoothed histogram of train lengths over 1..the longest sequence of any split.
    """

    kind = "text"

    def __init__(
        self,
        path: str | None = None,
        train: str | None = None,
        valid: str | None = None,
        test: str | None = None,
        split: Sequence[float] = (0.9, 0.05, 0.05),
        unit: str = "line",
        tokenizer: str = "char",
        vocab_size: int | None = None,
        max_length: int | None = None,
        encoding: str = "utf-8",
        batch_size: int | None = 32,
        max_tokens: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        length_smoothing: float = 1.0,
        limit_sequences: int | None = None,
    ) -> None:
        loader = LoaderSettings(
            batch_size=batch_size,
            max_tokens=max_tokens,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            length_smoothing=length_smoothing,
            limit_sequences=limit_sequences,
        )
        super().__init__(loader)
        files = [train, valid, test]
        if (path is None) == all(f is None for f in files):
            raise DataError("data: set data.path=FILE (split by data.split), or "
                            "data.train/data.valid/data.test, not both")  # fmt: skip
        if path is None and any(f is None for f in files):
            raise DataError("data: set all three of data.train, data.valid and data.test")
        if unit not in UNITS:
            raise DataError(f"data.unit must be one of {list(UNITS)}, got {unit!r}")
        if tokenizer not in TOKENIZERS:
            raise DataError(f"data.tokenizer must be one of {list(TOKENIZERS)}, got {tokenizer!r}")
        check_count("vocab_size", vocab_size)
        check_count("max_length", max_length)
        self.split = check_split(split)
        self.save_hyperparameters()
        self.path = None if path is None else Path(path).expanduser()
        self.files = None if path is not None else [Path(f).expanduser() for f in files]
        self.unit, self.tokenizer, self.vocab_size = unit, tokenizer, vocab_size
        self.length_limit, self.encoding = max_length, encoding
        self.collate_fn = collate_text

    def prepare_data(self) -> None:
        for path in [self.path] if self.path is not None else self.files:
            if not path.is_file():
                raise DataError(f"{path}: file not found")

    def read_file(self, path: Path) -> str:
        return read_text(path, self.encoding, hint=ENCODING_HINT)

    def units(self) -> dict[str, list[str]]:
        """The units (lines or paragraphs) of each split, before tokenizing."""
        if self.path is None:
            texts = [self.read_file(path) for path in self.files]
            return {s: units_of(text, self.unit) for s, text in zip(SPLITS, texts, strict=True)}
        units = units_of(self.read_file(self.path), self.unit)
        if not units:
            raise DataError(f"{self.path}: no {self.unit} with text in it")
        order = list(range(len(units)))
        random.Random(self.seed).shuffle(order)
        what = f"{len(units)} {self.unit}s in {self.path}"
        parts = deal_splits(order, self.split, what)
        return {name: [units[i] for i in picked] for name, picked in parts.items()}

    def sentences(self) -> dict[str, list[list[str]]]:
        """The token lists of each split, after the length filter."""
        out = {}
        for name, units in self.units().items():
            seqs = [tokenize(u, self.tokenizer) for u in units]
            if self.length_limit is not None:
                kept = [s for s in seqs if len(s) <= self.length_limit]
                self.sequences_read[name], self.dropped[name] = len(seqs), len(seqs) - len(kept)
                seqs = kept
            out[name] = seqs
        if any(self.dropped.values()):
            log.warning("data.max_length=%d dropped %s sequences", self.length_limit, self.dropped)
        return out

    def read_splits(self) -> dict[str, Any]:
        sentences = self.sentences()
        self.vocab = build_vocab(sentences["train"], self.vocab_size)
        self.num_features = len(self.vocab)
        datasets = {}
        for name, seqs in sentences.items():
            ids, offsets, _ = encode_sentences(seqs, self.vocab)
            total, oov = int(offsets[-1]), int((ids == CharVocab.UNK).sum())
            if name == "train" and total and oov == total:
                raise DataError(
                    "data: every training token is <unk> (data.vocab_size keeps none of them)"
                )
            if oov:
                log.info("%s: %d of %d tokens are <unk>", name, oov, total)
            dataset = TextDataset(ids, offsets, np.arange(len(seqs)), name)
            if self.limit_sequences is not None:
                dataset = dataset.head(self.limit_sequences)
            datasets[name] = dataset
        return datasets

    def fit_lengths(self) -> LengthDistribution:
        """Train lengths over 1..the longest sequence of any split."""
        longest = max(int(d.lengths.max(initial=0)) for d in self.splits().values())
        return fit_length_distribution(
            [self.train_dataset.lengths], self.length_smoothing, max(longest, 1)
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["tokenizer"], out["unit"] = self.tokenizer, self.unit
        return out
