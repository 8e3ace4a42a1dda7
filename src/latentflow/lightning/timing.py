"""Where a run's wall time goes: ``PhaseTimer`` writes ``timing.csv``, one row per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class PhaseTimer(pl.Callback):
    """Where a run's wall time goes, one row per epoch in ``<run dir>/timing.csv``.

    Columns: ``epoch``, ``batches`` (training batches run in the row), ``train_s`` (their
    forward, backward and optimizer step), ``val_s`` (the validation loop),
    ``ckpt_s`` (checkpoint writes, from ``AtomicCheckpointIO.seconds_writing``), ``other_s``
    (the rest of the epoch: data loading, logging, callbacks) and ``wall_s`` (epoch start to the
    next epoch's start, or the end of the fit). A resumed run appends to the same file, so the
    file covers every process of the run: an epoch cut by a stop and finished after the resume
    is two rows with the same ``epoch`` (their ``batches`` add up), and each process's start-up
    (launch to the start of training) is a row with ``epoch`` = ``start``. Rank zero writes.
    """

    COLUMNS = ("epoch", "batches", "train_s", "val_s", "ckpt_s", "other_s", "wall_s")

    def __init__(self, path: str, process_start: float | None = None) -> None:
        self.path = Path(path)
        self.process_start = process_start
        self._epoch: dict[str, float] | None = None
        self._batch_start = self._val_start = 0.0

    def _now(self) -> float:
        import time

        return time.perf_counter()

    def _written(self, trainer: pl.Trainer) -> float:
        io = getattr(trainer.strategy, "checkpoint_io", None)
        return float(getattr(io, "seconds_writing", 0.0))

    def _row(self, values: dict[str, Any]) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            if new:
                f.write(",".join(self.COLUMNS) + "\n")
            f.write(",".join(str(values.get(c, "")) for c in self.COLUMNS) + "\n")

    def _close_epoch(self, trainer: pl.Trainer) -> None:
        e, self._epoch = self._epoch, None
        if e is None or not trainer.is_global_zero:
            return
        wall = self._now() - e["start"]
        ckpt = self._written(trainer) - e["written"]
        other = max(wall - e["train"] - e["val"] - ckpt, 0.0)
        row = {"train_s": e["train"], "val_s": e["val"], "ckpt_s": ckpt, "other_s": other}
        row = _fmt(row | {"wall_s": wall})
        self._row({"epoch": int(e["epoch"]), "batches": int(e["batches"])} | row)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import time

        if self.process_start is not None and trainer.is_global_zero:
            startup = time.time() - self.process_start
            self._row(
                {"epoch": "start", "batches": 0} | _fmt({"other_s": startup, "wall_s": startup})
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_epoch(trainer)
        self._open_epoch(trainer)

    def _open_epoch(self, trainer: pl.Trainer) -> None:
        now = self._now()
        self._epoch = {
            "epoch": trainer.current_epoch,
            "start": now,
            "written": self._written(trainer),
            "batches": 0,
            "train": 0.0,
            "val": 0.0,
        }

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._epoch is None:  # a run resumed mid-epoch: Lightning skips on_train_epoch_start
            self._open_epoch(trainer)
        self._batch_start = self._now()
        self._written_at_batch = self._written(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._epoch is not None:  # a step checkpoint written inside the batch is ckpt_s
            spent = self._now() - self._batch_start
            self._epoch["train"] += spent - (self._written(trainer) - self._written_at_batch)
            self._epoch["batches"] += 1

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = self._now()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is not None and trainer.state.fn == "fit":
            self._epoch["val"] += self._now() - self._val_start

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_epoch(trainer)

    def on_exception(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._close_epoch(trainer)  # the time was spent: the row says how many batches it ran


def _fmt(values: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.3f}" for k, v in values.items()}
