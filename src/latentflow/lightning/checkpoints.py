"""Checkpoints for long runs: the best one (never a NaN), ``last.ckpt`` every N optimizer steps,
and ``last.ckpt`` when the job is told to stop (SIGTERM, the Slurm requeue signal).

They save at optimizer-step boundaries only, so that every checkpoint resumes exactly (see
``latentflow.lightning.data_order`` for the data side of an exact resume).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import RunningStage
from pytorch_lightning.utilities.exceptions import SIGTERMException

from latentflow.lightning.internals import (
    ModelCheckpointHooks,
    batches_done_this_epoch,
    set_sigterm_received,
    sigterm_received,
)

# The logger name run logs have always shown for these callbacks (log filters use it).
log = logging.getLogger("latentflow.lightning.callbacks")


def save_full_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """Everything a resume needs: weights, optimizer, loops, callbacks (not weights only)."""
    trainer.save_checkpoint(path, weights_only=False)


class StepBoundary(pl.Callback):
    """Knows whether the last training batch ended with an optimizer step. With gradient
    accumulation the batches in between hold gradients that no checkpoint stores, so a
    checkpoint taken there could not be resumed exactly: these callbacks save at steps only.

    Nor do they save after an epoch's LAST batch: the epoch's validation and its bookkeeping
    (best checkpoint, LR schedule, early stopping) have not run yet, and Lightning resumes such
    a checkpoint as a finished epoch, skipping them. ``ModelCheckpoint`` writes ``last.ckpt``
    after that validation (the exact resume point); a kill before it resumes from the step
    before and trains the last batch again, with the same noise."""

    def __init__(self) -> None:
        self._step_at_start = -1
        self.stepped = False

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._step_at_start = trainer.global_step

    def _note_step(self, trainer: pl.Trainer) -> bool:
        self.stepped = trainer.global_step != self._step_at_start
        return self.stepped

    @staticmethod
    def _ends_the_epoch(trainer: pl.Trainer) -> bool:
        total = trainer.num_training_batches
        # the running batch is counted by now
        return isinstance(total, int) and batches_done_this_epoch(trainer) >= total


class BestCheckpoint(ModelCheckpointHooks):
    """``ModelCheckpoint`` that never writes a "best" checkpoint whose monitored value is NaN or
    infinite (Lightning ranks a NaN as the worst value, yet keeps it when nothing better has
    been seen: a model that learned nothing would be the run's best), and that refreshes
    ``last.ckpt`` after every epoch, whatever the metric: it is the resume point.

    ``last.ckpt`` at every epoch end (or validation), best or not: Lightning 2.6 writes it only
    alongside a new top-k checkpoint, so a run that stops without a new best (early stopping)
    would end with ``last.ckpt`` behind its weights, and resuming the finished run would train
    again."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.saves_on_train_epoch_end(trainer):
            self.save_last_now(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self.saves_on_train_epoch_end(trainer):
            self.save_last_now(trainer)

    def accepts_best(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> bool:
        current = monitor_candidates.get(self.monitor) if self.monitor else None
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current))):
            log.warning("%s is %s: no best checkpoint from this validation", self.monitor, current)
            return False
        return True


class StepCheckpoint(StepBoundary):
    """Refresh ``dirpath/filename`` (``last.ckpt``) every ``every_n_train_steps`` optimizer steps.

    The resume point after a hard kill (SIGKILL, a lost node), where no checkpoint can be
    written at the end. 0 turns it off. Writes are atomic with ``AtomicCheckpointIO``.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 0, filename: str = "last.ckpt"):
        if every_n_train_steps < 0:
            raise ValueError(
                "callbacks.step_checkpoint.every_n_train_steps must be >= 0, "
                f"got {every_n_train_steps}"
            )
        super().__init__()
        self.path = Path(dirpath) / filename
        self.every_n_train_steps = every_n_train_steps

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        n = self.every_n_train_steps
        if self._note_step(trainer) and n and trainer.global_step % n == 0:
            if not self._ends_the_epoch(trainer):  # StepBoundary: the epoch-end edge
                save_full_checkpoint(trainer, self.path)


class PreemptionCheckpoint(StepBoundary):
    """Write ``last.ckpt`` at a batch boundary when the job is told to stop, then stop.

    * SIGTERM (``scancel``, pre-emption, ``kill``): Lightning notices it, finishes the current
      batch and raises ``SIGTERMException``; this callback then saves. With gradient
      accumulation Lightning's stop is held back until the optimizer step is complete
      (accumulated gradients are in no checkpoint). A SIGTERM during validation saves nothing
      (half an evaluation cannot be resumed): the resume point is the previous checkpoint.
    * ``signal`` (default SIGUSR2, what Slurm sends ``signal_delay_s`` before the time limit
      when jobs go through hydra-submitit-launcher): the flag is read after the next optimizer
      step (agreed across ranks), ``last.ckpt`` is written, and the handler that was installed
      before (submitit's: it re-submits the Hydra job and exits) is called. This is the one
      requeue mechanism; Lightning's own Slurm auto-requeue is switched off by train.py.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signal: str | None = "SIGUSR2"):
        super().__init__()
        self.path = Path(dirpath) / filename
        self.signal = signal
        self._signum: int | None = None
        self._previous: Any = None
        self._held_sigterm = False
        self.requested = False

    # -- the requeue signal -------------------------------------------------------------------
    def _handler(self, signum: int, frame: Any) -> None:
        log.warning("received %s: checkpointing after this batch", signal.Signals(signum).name)
        self.requested = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.signal is None or self._signum is not None:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._signum = int(getattr(signal, self.signal))
        self._previous = signal.getsignal(self._signum)
        signal.signal(self._signum, self._handler)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._previous or signal.SIG_DFL)
            self._signum = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        stepped = self._note_step(trainer)
        self._hold_sigterm_until_the_step(trainer, stepped)
        if not stepped or self._signum is None or self._ends_the_epoch(trainer):
            return  # at an epoch's last batch: after its validation, at the next step
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        save_full_checkpoint(trainer, self.path)
        log.warning("saved %s (step %d); stopping", self.path, trainer.global_step)
        previous, signum = self._previous, self._signum
        self.teardown(trainer, pl_module, "fit")
        if callable(previous):
            previous(signum, None)  # submitit: requeue the job (rank 0) and exit
        raise SystemExit(0 if trainer.global_rank else 128 + signum)

    # -- SIGTERM (Lightning's handler) --------------------------------------------------------
    def _hold_sigterm_until_the_step(self, trainer: pl.Trainer, stepped: bool) -> None:
        # Lightning stops after any batch once its SIGTERM flag is set; inside an accumulated
        # step, clear the flag and set it again after the batch that steps.
        if not stepped and sigterm_received(trainer):
            set_sigterm_received(trainer, False)
            self._held_sigterm = True
        elif stepped and self._held_sigterm:
            set_sigterm_received(trainer, True)
            self._held_sigterm = False

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        if trainer.state.stage != RunningStage.TRAINING or not self.stepped:
            log.warning("SIGTERM during validation: no checkpoint; resume from the previous one")
            return
        if self._ends_the_epoch(trainer):
            # Lightning raises at the very end of the epoch (after its validation, when the
            # SIGTERM landed in the last validation batch): the epoch counter has moved on while
            # the batch count has not, so a checkpoint now would resume past the next epoch's
            # training. last.ckpt written after this epoch's validation is the exact point.
            log.warning(
                "SIGTERM at the end of epoch %d: resume from last.ckpt", trainer.current_epoch
            )
            return
        save_full_checkpoint(trainer, self.path)
        log.warning("SIGTERM: saved %s (step %d)", self.path, trainer.global_step)
