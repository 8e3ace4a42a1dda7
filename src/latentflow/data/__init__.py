"""Data: PTB characters and polyphonic music, length distributions, bucketed batches.

The datamodules (the only part that needs pytorch_lightning) are imported on first use, so
`latentflow.data.vocab` and friends stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from latentflow.data.batching import BucketBatchSampler, collate_music, collate_text
from latentflow.data.download import DataError
from latentflow.data.lengths import LengthDistribution
from latentflow.data.vocab import CharVocab

if TYPE_CHECKING:
    from latentflow.data.datamodules import PolyphonicDataModule, PTBCharDataModule

__all__ = [
    "BucketBatchSampler",
    "CharVocab",
    "DataError",
    "LengthDistribution",
    "PTBCharDataModule",
    "PolyphonicDataModule",
    "collate_music",
    "collate_text",
]


def __getattr__(name: str) -> Any:
    if name in ("PTBCharDataModule", "PolyphonicDataModule"):
        from latentflow.data import datamodules

        return getattr(datamodules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
