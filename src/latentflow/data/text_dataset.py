"""Text as token ids: sentences encoded against a vocabulary, and the dataset of one split."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from latentflow.data.vocab import CharVocab


def encode_sentences(
    sentences: Sequence[Sequence[str]], vocab: CharVocab
) -> tuple[np.ndarray, np.ndarray, int]:
    """Encode sentences into flat ids [total] and offsets [N + 1]; also the OOV count."""
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    joined = "".join(chain.from_iterable(sentences))
    if len(joined) == offsets[-1]:
        # Fast path, every token one character: look code points up in a table.
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)  # [total]
        chars = {s: i for i, s in enumerate(vocab.symbols) if len(s) == 1}
        size = max([int(codes.max(initial=0)), *map(ord, chars)]) + 1
        table = np.full(size, CharVocab.UNK, dtype=np.int64)
        for s, i in chars.items():
            table[ord(s)] = i
        ids = table[codes]  # [total]
        oov = int((ids == CharVocab.UNK).sum())
    else:
        tokens = list(chain.from_iterable(sentences))
        ids = np.asarray(vocab.encode(tokens), dtype=np.int64)
        oov = sum(1 for t in tokens if t not in vocab)
    return ids, offsets, oov


class TextDataset(Dataset):
    """The encoded sentences of one split; item `i` is `(i, LongTensor[T_i])`.

    `lengths` [N] feeds the batch sampler; `line_numbers` [N] gives each sentence's line in
    `path` (0-based), since filtered sentences leave gaps.
    """

    def __init__(
        self, ids: np.ndarray, offsets: np.ndarray, line_numbers: np.ndarray, path: str = ""
    ) -> None:
        self.ids = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))  # [total]
        self.offsets = np.asarray(offsets, dtype=np.int64)  # [N + 1]
        self.lengths = np.diff(self.offsets)  # [N]
        self.line_numbers = np.asarray(line_numbers, dtype=np.int64)  # [N]
        self.path = path

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> tuple[int, Tensor]:
        return i, self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    def head(self, n: int) -> TextDataset:
        """The first `n` sentences."""
        n = min(n, len(self))
        return TextDataset(
            self.ids[: self.offsets[n]].numpy(),
            self.offsets[: n + 1],
            self.line_numbers[:n],
            self.path,
        )
