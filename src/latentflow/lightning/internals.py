"""The one place that reaches into Lightning's private API.

Every other module asks these functions and classes; each says which public API is missing and
what it relies on, so a Lightning upgrade that moves one of them breaks here, in one place (the
tests run against the lowest and the installed supported version). Checked with
pytorch-lightning 2.6.x.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, Timer


def batches_done_this_epoch(trainer: pl.Trainer) -> int:
    """Training batches of the current epoch already processed (the running one included once
    its ``on_train_batch_end`` is reached).

    No public API: ``trainer.fit_loop`` is public but its epoch loop's progress counters are
    not. Relies on ``fit_loop.epoch_loop.batch_progress.current.processed``, the counter
    Lightning itself restores on a mid-epoch resume (so it agrees with the resumed loop).
    """
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def sigterm_received(trainer: pl.Trainer) -> bool | None:
    """Whether Lightning's SIGTERM handler has seen a SIGTERM; None where the flag is not there.

    No public API: Lightning sets the flag in its signal connector and checks it after each
    training batch (raising ``SIGTERMException``). Relies on
    ``trainer._signal_connector.received_sigterm``.
    """
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not hasattr(connector, "received_sigterm"):
        return None
    return bool(connector.received_sigterm)


def set_sigterm_received(trainer: pl.Trainer, received: bool) -> None:
    """Set or clear Lightning's SIGTERM flag (to hold a stop back until an optimizer step ends).

    No public API to defer Lightning's SIGTERM stop; relies on the same flag as
    ``sigterm_received``. Does nothing where the flag is not there.
    """
    if sigterm_received(trainer) is not None:
        trainer._signal_connector.received_sigterm = received


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The ``Trainer`` the module is attached to, or None (built alone, or loaded for sampling).

    No public API asks whether a module is attached: ``module.trainer`` raises when it is not.
    Relies on ``LightningModule._trainer``, what that property returns.
    """
    return module._trainer


def timer_budget_is_set(timer: Timer) -> bool:
    """Whether the ``Timer`` has a time budget (``max_time``), so that it may stop the fit.

    Public API suffices: ``Timer.time_remaining`` is None exactly when no duration is set
    (the private ``_duration`` need not be read).
    """
    return timer.time_remaining("train") is not None


class ModelCheckpointHooks(ModelCheckpoint):
    """``ModelCheckpoint`` with the public hooks its subclasses need and Lightning lacks.

    * ``accepts_best(trainer, monitor_candidates)``: return False to skip this validation's
      top-k ("best") save. No public hook decides whether a candidate may be saved; this
      overrides ``ModelCheckpoint._save_topk_checkpoint`` (called by Lightning at every save
      point with the candidates it ranks).
    * ``save_last_now(trainer)``: write ``last.ckpt`` now, unless Lightning would skip saving
      at this point (not fitting, sanity check, already saved at this step). Relies on
      ``_should_skip_saving_checkpoint``, ``_monitor_candidates`` and ``_save_last_checkpoint``.
    * ``saves_on_train_epoch_end(trainer)``: whether Lightning saves at the training epoch's
      end rather than after validation. Relies on ``_should_save_on_train_epoch_end``.
    """

    def accepts_best(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> bool:
        """Whether this validation may produce a top-k checkpoint; every one may by default."""
        return True

    def save_last_now(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def saves_on_train_epoch_end(self, trainer: pl.Trainer) -> bool:
        return bool(self._should_save_on_train_epoch_end(trainer))

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        if self.accepts_best(trainer, monitor_candidates):
            super()._save_topk_checkpoint(trainer, monitor_candidates)
