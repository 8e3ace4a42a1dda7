"""Lightning DataModules for the built-in datasets: PTB characters and the four polyphonic music
datasets, read from the data root.

The data root is `root`, else `$LATENTFLOW_DATA`, else `./data`. `prepare_data()` fetches
missing files when `download` is on (see `latentflow.data.download`). What a datamodule exposes
after `setup()` is described in `latentflow.data.base`; batches in `latentflow.data.batching`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from latentflow.data import music, ptb
from latentflow.data.base import BucketedDataModule, LoaderSettings
from latentflow.data.batching import collate_music, collate_text
from latentflow.data.checks import check_count
from latentflow.data.download import resolve_root
from latentflow.data.errors import DataError
from latentflow.data.lengths import LengthDistribution, fit_length_distribution

log = logging.getLogger(__name__)


class BuiltinDataModule(BucketedDataModule):
    """A dataset latentflow knows, under the data root, fetched by `prepare_data()`.

    Args:
        settings: batching and loading (`LoaderSettings`).
        root: data root (None: `$LATENTFLOW_DATA`, else `./data`).
        download: let `prepare_data()` fetch missing files.
        base_url: a mirror laid out like the data root, replacing the default sources.
        verify: check files already there against their known SHA-256 (once per file).
    """

    def __init__(
        self,
        settings: LoaderSettings,
        root: str | None,
        download: bool,
        base_url: str | None,
        verify: bool,
    ) -> None:
        super().__init__(settings)
        self.root = resolve_root(root)
        self.download = download
        self.base_url = base_url
        self.verify = bool(verify)


class PTBCharDataModule(BuiltinDataModule):
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
    kept_rule = "T < max_length"

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
        loader = LoaderSettings(
            batch_size=batch_size,
            max_tokens=max_tokens,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            length_smoothing=length_smoothing,
            limit_sequences=limit_sequences,
        )
        super().__init__(loader, root, download, base_url, verify)
        check_count("max_length", max_length, minimum=2, optional=False)
        if eval_long not in ptb.EVAL_LONG:
            raise DataError(f"data.eval_long must be 'drop' or 'keep', got {eval_long!r}")
        self.save_hyperparameters()
        self.length_limit = max_length
        self.eval_long = eval_long
        self.collate_fn = collate_text

    @property
    def lines(self) -> dict[str, int]:
        """Sentences in each split's file, before the length filter."""
        return self.sequences_read

    def prepare_data(self) -> None:
        ptb.prepare_ptb(Path(self.root), self.download, self.base_url, verify=self.verify)

    def read_splits(self) -> dict[str, Any]:
        data = ptb.load_ptb(self.root, self.length_limit, self.eval_long, self.limit_sequences)
        self.vocab = data.vocab
        self.num_features = len(data.vocab)
        self.dropped, self.sequences_read = data.dropped, data.lines
        return data.datasets

    def fit_lengths(self) -> LengthDistribution:
        """Train lengths over 1..max_length - 1; with eval_long="keep" the support grows to
        the longest kept valid/test sentence (the model must handle every one)."""
        support = self.length_limit - 1
        if self.eval_long == "keep":
            for dataset in (self.val_dataset, self.test_dataset):
                support = max(support, int(dataset.lengths.max(initial=0)))
        return fit_length_distribution(
            [self.train_dataset.lengths], self.length_smoothing, support
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        for split in ptb.SPLITS:
            out[f"{split}/lines"] = self.lines[split]
            out[f"{split}/dropped"] = self.dropped[split]
        return out


class PolyphonicDataModule(BuiltinDataModule):
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
        loader = LoaderSettings(
            batch_size=batch_size,
            max_tokens=max_tokens,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            length_smoothing=length_smoothing,
            limit_sequences=limit_sequences,
        )
        super().__init__(loader, root, download, base_url, verify)
        self.save_hyperparameters()
        self.name = name
        self.num_features = music.NUM_NOTES
        self.collate_fn = collate_music

    def prepare_data(self) -> None:
        music.prepare_music(
            Path(self.root), self.name, self.download, self.base_url, verify=self.verify
        )

    def read_splits(self) -> dict[str, Any]:
        return music.load_music(self.root, self.name, self.limit_sequences)

    def fit_lengths(self) -> LengthDistribution:
        """Train + valid lengths over 1..ceil(1.25 x their longest); a longer test sequence
        is logged."""
        lengths = fit_length_distribution(
            [self.train_dataset.lengths, self.val_dataset.lengths], self.length_smoothing
        )
        longest_test = int(self.test_dataset.lengths.max())
        if longest_test > lengths.max_length:
            log.warning(
                "%s: a test sequence of %d steps is beyond the length support 1..%d",
                self.name,
                longest_test,
                lengths.max_length,
            )
        return lengths
