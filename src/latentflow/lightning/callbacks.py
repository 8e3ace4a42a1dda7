"""Callbacks for long runs: exact mid-epoch resume, checkpoints on pre-emption and every N steps,
and samples shown in the experiment tracker.

Resuming is exact (the final metrics equal those of an uninterrupted run with the same seed)
because everything a step depends on is restored: weights, optimizer moments, loop counters
(Lightning), the KL weight (a function of epoch, batch index and step), the random stream (keyed
by position, see ``SequenceLitModule``), and the data order: the epoch's batch list is a function
of (seed, epoch) and ``ResumeDataOrder`` skips the batches the checkpoint had already trained on.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.trainer.states import RunningStage
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

POSITION_KEY = "latentflow_train_position"


def _batches_done(trainer: pl.Trainer) -> int:
    """Training batches of the current epoch already processed (optimizer step taken)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


class _StepBoundary(pl.Callback):
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
        return isinstance(total, int) and _batches_done(trainer) >= total  # this batch counted


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
            "batches": _batches_done(trainer),
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


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that never writes a "best" checkpoint whose monitored value is NaN or
    infinite (Lightning ranks a NaN as the worst value, yet keeps it when nothing better has
    been seen: a model that learned nothing would be the run's best), and that refreshes
    ``last.ckpt`` after every epoch, whatever the metric: it is the resume point."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` at every epoch end (or validation), best or not. Lightning 2.6 writes it
        only alongside a new top-k checkpoint, so a run that stops without a new best (early
        stopping) would end with ``last.ckpt`` behind its weights, and resuming the finished run
        would train again."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        current = monitor_candidates.get(self.monitor) if self.monitor else None
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current))):
            log.warning("%s is %s: no best checkpoint from this validation", self.monitor, current)
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)


class StepCheckpoint(_StepBoundary):
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
            if not self._ends_the_epoch(trainer):  # class docstring: the epoch-end edge
                trainer.save_checkpoint(self.path, weights_only=False)  # full state


class PreemptionCheckpoint(_StepBoundary):
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
        trainer.save_checkpoint(self.path, weights_only=False)  # full state
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
        connector = getattr(trainer, "_signal_connector", None)
        if connector is None or not hasattr(connector, "received_sigterm"):
            return
        if not stepped and connector.received_sigterm:
            connector.received_sigterm, self._held_sigterm = False, True
        elif stepped and self._held_sigterm:
            connector.received_sigterm, self._held_sigterm = True, False

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
        trainer.save_checkpoint(self.path, weights_only=False)  # full state
        log.warning("SIGTERM: saved %s (step %d)", self.path, trainer.global_step)


class SampleLogger(pl.Callback):
    """After validation, draw ``num_samples`` sequences and show them in the tracker.

    Text (PTB) goes to a table (W&B) or a text panel (TensorBoard); piano rolls (music) as
    images, time left to right and pitch upwards, and as audio clips when ``audio`` is on and
    FluidSynth, a General MIDI soundfont and soundfile are installed (``latentflow.audio``;
    otherwise said once, and the images are still logged). Other loggers get nothing. Sampling
    uses its own seeded generator, so training's random stream is untouched; only rank zero
    samples. ``seconds_spent`` adds up the callback's own wall time (sampling and rendering).
    """

    def __init__(
        self,
        num_samples: int = 4,
        every_n_epochs: int = 1,
        temperature: float = 1.0,
        seed: int = 0,
        audio: bool = True,
        sample_rate: int = 16000,
    ) -> None:
        if num_samples < 1 or every_n_epochs < 1:
            raise ValueError("callbacks.samples.num_samples and every_n_epochs must be >= 1")
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.temperature = temperature
        self.seed = seed
        self.audio = audio
        self.sample_rate = sample_rate
        self._audio_settings: Any = None
        self.seconds_spent = 0.0

    def _audio(self, pl_module: pl.LightningModule) -> Any:
        """The render settings, or None (audio off or not installed: said once)."""
        if not self.audio:
            return None
        if self._audio_settings is None:
            from latentflow.audio import AudioError, AudioSettings, check_audio
            from latentflow.midi import default_step_beats

            data = pl_module.hparams.get("data_config") or {}
            step = data.get("step_beats") or default_step_beats(data.get("name"))
            try:
                self._audio_settings = check_audio(
                    AudioSettings(sample_rate=self.sample_rate, step_beats=float(step)),
                    key="callbacks.samples.audio",
                )
            except AudioError as err:
                log.warning("samples are logged without audio: %s", err)
                self.audio = False
                return None
        return self._audio_settings

    def _log_audio(self, loggers: list, rolls: list[np.ndarray], step: int, pl_module) -> None:
        import tempfile

        settings = self._audio(pl_module)
        if settings is None:
            return
        import soundfile

        from latentflow.audio import render_roll

        with tempfile.TemporaryDirectory(prefix="latentflow-samples-") as work:
            clips = []
            try:
                for i, roll in enumerate(rolls):
                    path = Path(work) / f"sample_{i}.wav"
                    render_roll(roll, path, settings)
                    clip = soundfile.read(path, dtype="float32", always_2d=True)[0]
                    clips.append((path, clip))
            except Exception as err:  # audio is an extra: it never stops a fit
                log.warning("samples are logged without audio from now on: %s", err)
                self.audio = False
                return
            for lg in loggers:
                if isinstance(lg, WandbLogger):
                    import wandb

                    audio = [
                        wandb.Audio(str(path), caption=f"T={len(roll)}")
                        for (path, _), roll in zip(clips, rolls, strict=True)
                    ]
                    lg.experiment.log({"samples/audio": audio, "trainer/global_step": step})
                else:
                    for i, (_, clip) in enumerate(clips):
                        mono = torch.from_numpy(clip.mean(axis=1))[None]  # [1, frames]
                        lg.experiment.add_audio(
                            f"samples/audio_{i}", mono, step, sample_rate=settings.sample_rate
                        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger | TensorBoardLogger)]
        if not loggers or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.state.fn != "fit":  # the evaluations after fitting add nothing new
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        import time

        start = time.perf_counter()
        try:
            self._log_samples(trainer, pl_module, loggers)
        finally:
            self.seconds_spent += time.perf_counter() - start

    def _log_samples(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loggers) -> None:
        generator = torch.Generator().manual_seed(self.seed + trainer.current_epoch)
        out = pl_module.net.sample(
            num_samples=self.num_samples, temperature=self.temperature, generator=generator
        )
        x, lengths = out["x"].cpu(), out["lengths"].cpu()
        step = trainer.global_step
        if getattr(pl_module, "text", False):
            from latentflow.data.vocab import text_decoder

            decode = text_decoder(pl_module.vocab, pl_module.hparams.get("data_config"))
            texts = [decode(x[i, : lengths[i]]) for i in range(len(x))]
            for lg in loggers:
                if isinstance(lg, WandbLogger):
                    epoch = trainer.current_epoch
                    rows = [[epoch, int(n), t] for n, t in zip(lengths, texts, strict=True)]
                    lg.log_text("samples/text", columns=["epoch", "length", "text"], data=rows)
                else:
                    shown = [f"T={int(n)}: {t}" for n, t in zip(lengths, texts, strict=True)]
                    lg.experiment.add_text("samples/text", "\n\n".join(shown), step)
        else:
            images = [piano_roll_image(x[i, : lengths[i]]) for i in range(len(x))]
            rolls = [x[i, : lengths[i]].numpy() for i in range(len(x))]
            self._log_audio(loggers, rolls, step, pl_module)
            for lg in loggers:
                if isinstance(lg, WandbLogger):
                    captions = [f"T={int(n)}" for n in lengths]
                    lg.log_image("samples/piano_roll", images, step=step, caption=captions)
                else:
                    for i, image in enumerate(images):
                        lg.experiment.add_image(
                            f"samples/piano_roll_{i}", image, step, dataformats="HW"
                        )


def piano_roll_image(roll: torch.Tensor) -> np.ndarray:
    """A [T, 88] 0/1 roll as a uint8 image [88, T]: black notes on white, high pitches on top."""
    image = roll.detach().float().T.flip(0).clamp(0, 1)  # [88, T]
    return (255 * (1 - image)).to(torch.uint8).numpy()


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
