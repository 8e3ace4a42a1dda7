"""Character vocabulary for PTB: `<pad>` = 0, `<unk>` = 1, then the train symbols, sorted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
WORD_BOUNDARY = "_"  # Mikolov's char files write the space between words as "_"


class CharVocab:
    """A fixed list of symbols; `symbols[0] == "<pad>"`, `symbols[1] == "<unk>"`.

    `symbols` is a plain list of strings, so a model can keep it in its hyperparameters and
    rebuild the vocabulary from a checkpoint with `CharVocab(symbols)`.

    >>> vocab = CharVocab.build([["a", "_", "b"], ["b"]])
    >>> vocab.symbols
    ['<pad>', '<unk>', '_', 'a', 'b']
    >>> vocab.encode(["a", "_", "z"])
    [3, 2, 1]
    >>> vocab.to_text([3, 2, 4, 0, 0])
    'a b'
    """

    PAD = 0
    UNK = 1

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = [str(s) for s in symbols]
        if symbols[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(
                f"vocabulary symbols must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}, "
                f"got {symbols[:2]}"
            )
        if len(set(symbols)) != len(symbols):
            raise ValueError("vocabulary symbols must be unique")
        self.symbols: list[str] = symbols
        self._index = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]]) -> CharVocab:
        """The vocabulary of every token in `sentences` (lists of tokens), sorted."""
        seen: set[str] = set()
        for tokens in sentences:
            seen.update(tokens)
        seen -= {PAD_TOKEN, UNK_TOKEN}
        return cls([PAD_TOKEN, UNK_TOKEN, *sorted(seen)])

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} symbols)"

    def index(self, token: str) -> int:
        """The id of `token`, `UNK` when it is not in the vocabulary."""
        return self._index.get(token, self.UNK)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token strings to ids; out-of-vocabulary tokens become `UNK` (1)."""
        index, unk = self._index, self.UNK
        return [index.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """Ids to symbol strings, one per id (`<pad>` and `<unk>` included)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.symbols[i] for i in ids]

    def to_text(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Ids to a readable sentence: `<pad>` ids dropped, symbols joined, `_` -> space.

        An out-of-vocabulary id (`UNK`) reads as `<unk>`, like PTB's own unknown-word marker.
        """
        return "".join(s for s in self.decode(ids) if s != PAD_TOKEN).replace(WORD_BOUNDARY, " ")


def detokenize(tokens: Sequence[str], tokenizer: str) -> str:
    """Text from the tokens of a ``TextFileDataModule`` (``char``: joined; ``word``: joined by
    spaces, line-break tokens as line breaks); ``<pad>`` dropped."""
    tokens = [t for t in tokens if t != PAD_TOKEN]
    if tokenizer == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(" \n ", "\n")


def text_decoder(symbols: Sequence[str], data_config: dict | None):
    """ids -> text for a model's vocabulary, in its data's tokenization: a text_file's
    (``data_config["tokenizer"]``), or PTB's characters with ``_`` for the space."""
    vocab = CharVocab(symbols)
    tokenizer = (data_config or {}).get("tokenizer")
    if tokenizer is None:
        return vocab.to_text
    return lambda ids: detokenize(vocab.decode(ids), tokenizer)
