"""Samples shown in the experiment tracker after validation: text as tables or text panels,
piano rolls as images and, where FluidSynth is installed, as audio clips."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

# The logger name run logs have always shown for these callbacks (log filters use it).
log = logging.getLogger("latentflow.lightning.callbacks")


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
