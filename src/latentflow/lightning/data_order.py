"""The data side of an exact resume: a resumed epoch continues at the batch it was cut at.

Resuming is exact (the final metrics equal those of an uninterrupted run with the same seed)
because everything a step depends on is restored: weights, optimizer moments, loop counters
(Lightning), the KL weight (a function of epoch, batch index and step), the random stream (keyed
by position, see ``SequenceLitModule``), and the data order: the epoch's batch list is a function
of (seed, epoch) and ``ResumeDataOrder`` skips the batches the checkpoint had already trained on.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytorch_lightning as pl

from latentflow.lightning.internals import batches_done_this_epoch

# The logger name run logs have always shown for these callbacks (log filters use it).
log = logging.getLogger("latentflow.lightning.callbacks")

POSITION_KEY = "latentflow_train_position"


class ResumeDataOrder(pl.Callback):
    """Continue a resumed epoch at the batch where its checkpoint was taken.

    Saves ``{"epoch", "batches"}`` in the checkpoint; on resume, the training batch sampler
    (which must have ``set_start(batch, epoch)``, as ``BucketBatchSampler``) skips that many
    batches of that epoch. Lightning's batch index keeps counting from the restored progress, so
    the skipped batches are exactly those the run before had trained on.
    """

    def __init__(self) -> None:
        self._resume: dict[str, int] | None = None
        # With this callback the loader is resumable, whatever Lightning's check concludes.
        warnings.filterwarnings(
            "ignore", message=r".*resuming from a checkpoint that ended before the epoch ended.*"
        )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[POSITION_KEY] = {
            "epoch": int(trainer.current_epoch),
            "batches": batches_done_this_epoch(trainer),
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._resume = checkpoint.get(POSITION_KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the epoch's iterator exists; Lightning skips on_train_epoch_start when it
        # restarts mid-epoch. The sampler applies the skip only to an iteration of that epoch.
        resume, self._resume = self._resume, None
        if not resume or resume["batches"] <= 0:
            return
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if not hasattr(sampler, "set_start"):
            log.warning(
                "resuming epoch %d after batch %d, but the training sampler cannot skip batches: "
                "the epoch restarts from its first batch",
                resume["epoch"],
                resume["batches"],
            )
            return
        sampler.set_start(resume["batches"], epoch=resume["epoch"])
        log.info("resuming epoch %d at batch %d", resume["epoch"], resume["batches"])
