"""Lightning DataModules for PTB characters and the four polyphonic music datasets.

After `setup()` a datamodule exposes what the model needs: `kind` ("text" | "music"),
`vocab` (CharVocab or None), `num_features` (len(vocab) or 88), `length_distribution`
(p(T)), `max_length` (the largest T the model must handle, = length_distribution.max_length)
and the three datasets. Batches are dicts, see `latentflow.data.batching`.

The data root is `root`, else `$LATENTFLOW_DATA`, else `./data`. `prepare_data()` fetches
missing files when `download` is on (see `latentflow.data.download`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from latentflow.data import music, ptb
from latentflow.data.batching import Batch, BucketBatchSampler, collate_music, collate_text
from latentflow.data.download import DataError, resolve_root
from latentflow.data.lengths import LengthDistribution
from latentflow.data.vocab import CharVocab

log = logging.getLogger(__name__)


def _check_count(key: str, value: int | None, minimum: int = 1, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"data.{key} must be an integer >= {minimum}, got {value!r}")


class _BucketedDataModule(pl.LightningDataModule):
    """What both datamodules share: validation, samplers, loaders, resumable order."""

    kind: str

    def __init__(
        self,
        root: str | None,
        batch_size: int | None,
        max_tokens: int | None,
        eval_batch_size: int | None,
        num_workers: int,
        seed: int,
        download: bool,
        base_url: str | None,
        length_smoothing: float,
        limit_sequences: int | None,
        verify: bool = True,
    ) -> None:
        super().__init__()
        self.verify = bool(verify)
        if (batch_size is None) == (max_tokens is None):
            raise ValueError(
                "set exactly one of data.batch_size and data.max_tokens, got "
                f"batch_size={batch_size!r}, max_tokens={max_tokens!r}"
            )
        _check_count("batch_size", batch_size)
        _check_count("max_tokens", max_tokens)
        _check_count("eval_batch_size", eval_batch_size)
        _check_count("num_workers", num_workers, minimum=0, optional=False)
        _check_count("limit_sequences", limit_sequences)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"data.seed must be an integer, got {seed!r}")
        if not isinstance(length_smoothing, int | float) or not (0 <= length_smoothing < math.inf):
            raise ValueError(f"data.length_smoothing must be >= 0, got {length_smoothing!r}")
        self.root = resolve_root(root)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.download = download
        self.base_url = base_url
        self.length_smoothing = float(length_smoothing)
        self.limit_sequences = limit_sequences
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

    # -- subclasses ---------------------------------------------------------------------------
    collate_fn: Callable[..., Batch]

    def _load(self) -> None:
        raise NotImplementedError

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read all three splits (once) and build the length distribution. A split left empty
        (by the data, a length filter or a split ratio) is a DataError naming it."""
        if self.train_dataset is None:
            self._load()
            for split, dataset in self._split_items().items():
                if len(dataset) == 0:
                    raise DataError(
                        f"data: the {split} split has no sequences{self._why_empty(split)}"
                    )

    def _why_empty(self, split: str) -> str:
        """Why a split may be empty (subclasses name their filters)."""
        return ""

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
            self.seed = seed
        if self._train_sampler is not None:
            self._train_sampler.load_state_dict(sampler_state)

    # -- summaries ----------------------------------------------------------------------------
    def _split_items(self) -> dict[str, Any]:
        return {"train": self.train_dataset, "valid": self.val_dataset, "test": self.test_dataset}

    def describe(self) -> dict[str, Any]:
        """Split sizes and token counts, flat keys for a logger."""
        self.setup()
        out: dict[str, Any] = {
            "kind": self.kind,
            "num_features": self.num_features,
            "max_length": self.max_length,
        }
        for split, dataset in self._split_items().items():
            lengths = np.asarray(dataset.lengths)
            out[f"{split}/sequences"] = len(dataset)
            out[f"{split}/tokens"] = int(lengths.sum())
            out[f"{split}/max_length"] = int(lengths.max()) if len(lengths) else 0
        return out


class PTBCharDataModule(_BucketedDataModule):
    """Penn Treebank characters (paper Section 6), see `latentflow.data.ptb` for the format.

    Args:
        root: data root (None: `$LATENTFLOW_DATA`, else `./data`).
        batch_size: sentences per batch (paper: 15); or None with `max_tokens`.
        max_tokens: batch budget B x (longest T in the batch), instead of `batch_size`.
        eval_batch_size: sentences per valid/test batch (None: as in training).
        max_length: keep sentences with T < max_length (the paper's rule, 288);
            289 gives the reference code's T <= 288.
        eval_long: "drop" (default, as the reference) or "keep" valid/test sentences with
            T >= max_length. With "keep" the length support grows to the longest of them.
        num_workers: DataLoader worker processes.
        seed: seed of the training order (epoch e uses seed + e).
        download: let `prepare_data()` fetch missing files.
        base_url: a mirror laid out like the data root, replacing the default sources.
        length_smoothing: add-alpha smoothing of p(T). The default 1.0 (add-one) gives an
            evaluation length absent from train a finite log-probability.
        limit_sequences: keep the first N sentences of each split (tiny runs); the vocabulary
            still comes from all of train.

    After `setup()`, p(T) is the histogram of train lengths (after the filter) over
    1..max_length - 1, so the attribute `max_length` is 287 by default.
    """

    kind = "text"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int | None = 15,
        max_tokens: int | None = None,
        eval_batch_size: int | None = None,
        max_length: int = 288,
        eval_long: str = "drop",
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
        base_url: str | None = None,
        length_smoothing: float = 1.0,
        limit_sequences: int | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__(
            root,
            batch_size,
            max_tokens,
            eval_batch_size,
            num_workers,
            seed,
            download,
            base_url,
            length_smoothing,
            limit_sequences,
            verify,
        )
        _check_count("max_length", max_length, minimum=2, optional=False)
        if eval_long not in ptb.EVAL_LONG:
            raise ValueError(f"data.eval_long must be 'drop' or 'keep', got {eval_long!r}")
        self.save_hyperparameters()
        self.length_limit = max_length
        self.eval_long = eval_long
        self.collate_fn = collate_text
        self.dropped: dict[str, int] = {}
        self.lines: dict[str, int] = {}

    def prepare_data(self) -> None:
        ptb.prepare_ptb(Path(self.root), self.download, self.base_url, verify=self.verify)

    def _load(self) -> None:
        data = ptb.load_ptb(self.root, self.length_limit, self.eval_long, self.limit_sequences)
        self.vocab = data.vocab
        self.num_features = len(data.vocab)
        self.dropped, self.lines = data.dropped, data.lines
        self.train_dataset = data.datasets["train"]
        self.val_dataset = data.datasets["valid"]
        self.test_dataset = data.datasets["test"]
        support = self.length_limit - 1
        if self.eval_long == "keep":
            # The model must handle every kept evaluation length.
            for dataset in (self.val_dataset, self.test_dataset):
                support = max(support, int(dataset.lengths.max(initial=0)))
        self.length_distribution = LengthDistribution.from_lengths(
            self.train_dataset.lengths.tolist(), support, self.length_smoothing
        )
        self.max_length = self.length_distribution.max_length

    def _why_empty(self, split: str) -> str:
        dropped = self.dropped.get(split, 0)
        if dropped:
            return (
                f" ({dropped} of {self.lines[split]} dropped by the length filter "
                f"data.max_length={self.length_limit}: T < max_length is kept)"
            )
        return ""

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        for split in ptb.SPLITS:
            out[f"{split}/lines"] = self.lines[split]
            out[f"{split}/dropped"] = self.dropped[split]
        return out


class PolyphonicDataModule(_BucketedDataModule):
    """One of the four polyphonic music datasets as 88-key piano rolls.

    Args:
        name: "jsb_chorales", "nottingham", "piano_midi" or "muse_data".
        batch_size: sequences per batch (reference: 5 for JSB and Nottingham, 1 for the
            others with gradient accumulation); or None with `max_tokens` (B x longest T).
        length_smoothing: add-alpha smoothing of p(T) (the reference's add-one by default).
        Others as in `PTBCharDataModule`.

    After `setup()`, p(T) is the histogram of train + valid lengths over
    1..ceil(1.25 x their longest), as in the reference code.
    """

    kind = "music"

    def __init__(
        self,
        name: str,
        root: str | None = None,
        batch_size: int | None = 5,
        max_tokens: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
        base_url: str | None = None,
        length_smoothing: float = 1.0,
        limit_sequences: int | None = None,
        verify: bool = True,
    ) -> None:
        music.check_name(name)
        super().__init__(
            root,
            batch_size,
            max_tokens,
            eval_batch_size,
            num_workers,
            seed,
            download,
            base_url,
            length_smoothing,
            limit_sequences,
            verify,
        )
        self.save_hyperparameters()
        self.name = name
        self.num_features = music.NUM_NOTES
        self.collate_fn = collate_music

    def prepare_data(self) -> None:
        music.prepare_music(
            Path(self.root), self.name, self.download, self.base_url, verify=self.verify
        )

    def _load(self) -> None:
        splits = music.load_music(self.root, self.name, self.limit_sequences)
        self.train_dataset, self.val_dataset = splits["train"], splits["valid"]
        self.test_dataset = splits["test"]
        seen = np.concatenate([self.train_dataset.lengths, self.val_dataset.lengths])
        support = math.ceil(1.25 * int(seen.max()))
        self.length_distribution = LengthDistribution.from_lengths(
            seen.tolist(), support, self.length_smoothing
        )
        self.max_length = self.length_distribution.max_length
        longest_test = int(self.test_dataset.lengths.max())
        if longest_test > support:
            log.warning(
                "%s: a test sequence of %d steps is beyond the length support 1..%d",
                self.name,
                longest_test,
                support,
            )
