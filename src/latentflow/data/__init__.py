"""Data: the built-in datasets and your own, as length-bucketed batches with a p(T).

Which module owns what:

* `base`: `BucketedDataModule`, the datamodule every dataset subclasses, and its
  `LoaderSettings` (batch size or token budget, workers, seed, p(T) smoothing).
* `datamodules`: the built-in datasets, `PTBCharDataModule` and `PolyphonicDataModule`.
* `midi_folder`: your own MIDI files, `MidiFolderDataModule` (parsing, cache, transposition).
* `text_file`: your own text, `TextFileDataModule` (units, tokenizers, vocabulary).
* `ptb`, `music`: the PTB char files and the music .npz files (formats, reading, preparing).
* `download`: the data root, checksummed downloads and atomic writes.
* `errors`: `DataError`, the one error for bad data or a bad data setting.
* `checks`: setting checks (counts) and the check that no split is empty.
* `splits`: train/valid/test ratios and how items are dealt into the splits.
* `lengths`: `LengthDistribution` p(T) and `fit_length_distribution`, the one p(T) builder.
* `text_reader`: `read_text`, the one text-file reader.
* `text_dataset`: `TextDataset` and `encode_sentences` (token ids of text).
* `vocab`: `CharVocab`, the token vocabulary.
* `batching`: `BucketBatchSampler` and the collate functions (the batch format).

The datamodules (the only part that needs pytorch_lightning) are imported on first use, so
`latentflow.data.vocab`, `lengths` and `batching` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from latentflow.data.batching import BucketBatchSampler, collate_music, collate_text
from latentflow.data.errors import DataError
from latentflow.data.lengths import LengthDistribution
from latentflow.data.vocab import CharVocab

if TYPE_CHECKING:
    from latentflow.data.base import BucketedDataModule, LoaderSettings
    from latentflow.data.datamodules import PolyphonicDataModule, PTBCharDataModule
    from latentflow.data.midi_folder import MidiFolderDataModule
    from latentflow.data.text_file import TextFileDataModule

# name -> the module that defines it, imported on first use (these need pytorch_lightning).
_LAZY = {
    "BucketedDataModule": "base",
    "LoaderSettings": "base",
    "PTBCharDataModule": "datamodules",
    "PolyphonicDataModule": "datamodules",
    "MidiFolderDataModule": "midi_folder",
    "TextFileDataModule": "text_file",
}

__all__ = [
    "BucketBatchSampler",
    "BucketedDataModule",
    "CharVocab",
    "DataError",
    "LengthDistribution",
    "LoaderSettings",
    "MidiFolderDataModule",
    "PTBCharDataModule",
    "PolyphonicDataModule",
    "TextFileDataModule",
    "collate_music",
    "collate_text",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
