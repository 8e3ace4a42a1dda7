"""The bucketed datamodule every dataset builds on: loader settings, samplers, resumable order.

A subclass reads its three splits (`read_splits`) and fits its p(T) (`fit_lengths`); the base
checks that no split is empty, then serves length-bucketed DataLoaders and keeps the training
order in the checkpoint. After `setup()` a datamodule exposes what the model needs: `kind`
("text" | "music"), `vocab` (CharVocab or None), `num_features`, `length_distribution` (p(T)),
`max_length` (= length_distribution.max_length) and the three datasets.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from latentflow.data.batching import Batch, BucketBatchSampler
from latentflow.data.checks import check_count, require_sequences, why_empty
from latentflow.data.errors import DataError
from latentflow.data.lengths import LengthDistribution
from latentflow.data.splits import SPLITS
from latentflow.data.vocab import CharVocab

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderSettings:
    """How a datamodule batches and loads its data (the `data.*` keys every dataset shares).

    Args:
        batch_size: sequences per batch; or None with `max_tokens`.
        max_tokens: batch budget B x (longest T in the batch), instead of `batch_size`.
        eval_batch_size: sequences per valid/test batch (None: as in training).
        num_workers: DataLoader worker processes.
        seed: seed of the training order (epoch e uses seed + e).
        length_smoothing: add-alpha smoothing of p(T).
        limit_sequences: keep the first N sequences of each split (tiny runs).
    """

    batch_size: int | None
    max_tokens: int | None
    eval_batch_size: int | None = None
    num_workers: int = 0
    seed: int = 0
    length_smoothing: float = 1.0
    limit_sequences: int | None = None

    def __post_init__(self) -> None:
        if (self.batch_size is None) == (self.max_tokens is None):
            raise DataError(
                "set exactly one of data.batch_size and data.max_tokens, got "
                f"batch_size={self.batch_size!r}, max_tokens={self.max_tokens!r}"
            )
        check_count("batch_size", self.batch_size)
        check_count("max_tokens", self.max_tokens)
        check_count("eval_batch_size", self.eval_batch_size)
        check_count("num_workers", self.num_workers, minimum=0, optional=False)
        check_count("limit_sequences", self.limit_sequences)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(f"data.seed must be an integer, got {self.seed!r}")
        smoothing = self.length_smoothing
        if not isinstance(smoothing, int | float) or not (0 <= smoothing < math.inf):
            raise DataError(f"data.length_smoothing must be >= 0, got {smoothing!r}")
        object.__setattr__(self, "length_smoothing", float(smoothing))


class BucketedDataModule(pl.LightningDataModule):
    """A datamodule of three splits served in length buckets (module docstring).

    Subclasses set `kind` and `collate_fn`, and implement `read_splits` and `fit_lengths`.
    A subclass with a length filter fills `dropped` and `sequences_read` per split and sets
    `length_limit`, so an emptied split names the filter; `kept_rule` says what it keeps.
    """

    kind: str
    collate_fn: Callable[..., Batch]
    kept_rule = "T <= max_length"

    def __init__(self, settings: LoaderSettings) -> None:
        super().__init__()
        self.settings = settings
        self.length_limit: int | None = None
        self.dropped: dict[str, int] = {}  # per split: removed by the length filter
        self.sequences_read: dict[str, int] = {}  # per split: before the length filter
        # Filled by setup().
        self.vocab: CharVocab | None = None
        self.num_features: int | None = None
        self.length_distribution: LengthDistribution | None = None
        self.max_length: int | None = None
        self.train_dataset: Any = None
        self.val_dataset: Any = None
        self.test_dataset: Any = None
        self._epoch = 0
        self._train_sampler: BucketBatchSampler | None = None

    # -- the settings, by their config names ----------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        return self.settings.batch_size

    @property
    def max_tokens(self) -> int | None:
        return self.settings.max_tokens

    @property
    def eval_batch_size(self) -> int | None:
        return self.settings.eval_batch_size

    @property
    def num_workers(self) -> int:
        return self.settings.num_workers

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def length_smoothing(self) -> float:
        return self.settings.length_smoothing

    @property
    def limit_sequences(self) -> int | None:
        return self.settings.limit_sequences

    # -- subclasses -----------------------------------------------------------------------------
    def read_splits(self) -> dict[str, Any]:
        """The datasets of "train", "valid" and "test" (each with `lengths` [N])."""
        raise NotImplementedError

    def fit_lengths(self) -> LengthDistribution:
        """p(T) from the datasets just read (see `lengths.fit_length_distribution`)."""
        raise NotImplementedError

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read all three splits (once) and build the length distribution. A split left empty
        (by the data, a length filter or a split ratio) is a DataError naming it."""
        if self.train_dataset is not None:
            return
        splits = self.read_splits()
        require_sequences(splits, self.empty_reason)
        self.train_dataset, self.val_dataset, self.test_dataset = (splits[s] for s in SPLITS)
        self.length_distribution = self.fit_lengths()
        self.max_length = self.length_distribution.max_length

    def empty_reason(self, split: str) -> str:
        """What the length filter took from `split` (see `checks.why_empty`)."""
        dropped, read = self.dropped.get(split, 0), self.sequences_read.get(split, 0)
        return why_empty(dropped, read, self.length_limit, self.kept_rule)

    def _replicas(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _loader(self, dataset: Any, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        world, rank = self._replicas()
        if train or self.eval_batch_size is None:
            batch_size, max_tokens = self.batch_size, self.max_tokens
        else:
            batch_size, max_tokens = self.eval_batch_size, None
        sampler = BucketBatchSampler(
            dataset.lengths,
            batch_size=batch_size,
            max_tokens=max_tokens,
            shuffle=train,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        if train:
            epoch = self.trainer.current_epoch if self.trainer is not None else self._epoch
            sampler.set_epoch(epoch)
            self._train_sampler = sampler
            if hasattr(dataset, "bind_sampler"):  # per-epoch augmentation follows the order
                dataset.bind_sampler(sampler)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, train=False)

    def state_dict(self) -> dict[str, Any]:
        """The training sampler's epoch and seed (the data order of a resumed run)."""
        if self._train_sampler is not None:
            return {"train_sampler": self._train_sampler.state_dict()}
        return {"train_sampler": {"epoch": self._epoch, "seed": self.seed}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sampler_state = state_dict.get("train_sampler", {})
        self._epoch = int(sampler_state.get("epoch", 0))
        seed = int(sampler_state.get("seed", self.seed))
        if seed != self.seed:
            log.warning("data.seed %d replaced by the checkpoint's %d on resume", self.seed, seed)
            self.settings = dataclasses.replace(self.settings, seed=seed)
        if self._train_sampler is not None:
            self._train_sampler.load_state_dict(sampler_state)

    # -- summaries ------------------------------------------------------------------------------
    def splits(self) -> dict[str, Any]:
        """The three datasets by split name (None before `setup()`)."""
        return {"train": self.train_dataset, "valid": self.val_dataset, "test": self.test_dataset}

    def describe(self) -> dict[str, Any]:
        """Split sizes and token counts, flat keys for a logger."""
        self.setup()
        out: dict[str, Any] = {
            "kind": self.kind,
            "num_features": self.num_features,
            "max_length": self.max_length,
        }
        for split, dataset in self.splits().items():
            lengths = np.asarray(dataset.lengths)
            out[f"{split}/sequences"] = len(dataset)
            out[f"{split}/tokens"] = int(lengths.sum())
            out[f"{split}/max_length"] = int(lengths.max()) if len(lengths) else 0
        return out
