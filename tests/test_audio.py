"""A listening check that can fail: rolls of known content rendered by the real FluidSynth and
General MIDI soundfont, and the pitches, durations and silences found again by FFT."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from latentflow.audio import AudioError, AudioSettings, check_audio, default_soundfont, render_roll

from .helpers import run_module

HAVE_AUDIO = shutil.which("fluidsynth") is not None and default_soundfont() is not None
if not HAVE_AUDIO and os.environ.get("LATENTFLOW_REQUIRE_AUDIO"):
    raise RuntimeError("FluidSynth and a soundfont are required here (CI installs them)")
needs_audio = pytest.mark.skipif(not HAVE_AUDIO, reason="no FluidSynth/soundfont")

# 120 beats a minute, a quarter note a step: 0.5 s a step
SETTINGS = AudioSettings(tempo_bpm=120.0, step_beats=1.0, sample_rate=22050)


def roll_of(notes: list[int], steps: int, on: slice = slice(None)) -> np.ndarray:
    roll = np.zeros((steps, 88), dtype=bool)
    for note in notes:
        roll[on, note - 21] = True
    return roll


def read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    audio, rate = soundfile.read(path, always_2d=True)
    return audio.mean(axis=1), rate


def spectrum(mono: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return np.fft.rfftfreq(len(mono), 1 / rate), magnitude


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


@needs_audio
def test_a4_for_one_second_sounds_at_440_hz_for_one_second(tmp_path):
    path = tmp_path / "a4.wav"
    assert render_roll(roll_of([69], 2), path, check_audio(SETTINGS))
    mono, rate = read(path)
    assert len(mono) == rate * 1  # 2 steps x 0.5 s, to the frame
    freqs, mag = spectrum(mono, rate)
    assert freqs[mag.argmax()] == pytest.approx(440.0, rel=0.01)


@needs_audio
def test_a_c_major_triad_holds_its_three_fundamentals(tmp_path):
    path = tmp_path / "triad.flac"
    settings = check_audio(AudioSettings(**{**SETTINGS.__dict__, "format": "flac"}))
    render_roll(roll_of([60, 64, 67], 4), path, settings)
    mono, rate = read(path)
    assert len(mono) == 2 * rate
    freqs, mag = spectrum(mono, rate)

    def band(f0: float) -> float:  # the strongest bin within 1% of f0
        near = (freqs > f0 * 0.99) & (freqs < f0 * 1.01)
        return float(mag[near].max())

    fundamentals = [261.63, 329.63, 392.00]
    floor = float(np.median(mag[(freqs > 200) & (freqs < 1000)]))
    for f0 in fundamentals:
        assert band(f0) > 20 * floor, f0
    # and no note of the chromatic neighbours sounds as loudly as the triad's weakest
    weakest = min(band(f0) for f0 in fundamentals)
    for f0 in (277.18, 293.66, 311.13, 349.23, 369.99):  # C#4, D4, D#4, F4, F#4
        assert band(f0) < weakest, f0


@needs_audio
def test_silence_where_the_roll_is_empty_and_a_silent_file_for_no_note(tmp_path):
    path = tmp_path / "then_silence.wav"
    render_roll(roll_of([69], 8, on=slice(0, 2)), path, check_audio(SETTINGS))  # 1 s, then 3 s
    mono, rate = read(path)
    assert len(mono) == 4 * rate
    assert rms(mono[-rate:]) < 0.01 * rms(mono[: rate // 2])  # the last second: silence
    empty = tmp_path / "empty.wav"
    assert not render_roll(np.zeros((6, 88)), empty, check_audio(SETTINGS))
    silence, rate = read(empty)
    assert len(silence) == 3 * rate and not silence.any()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"format": "mp3"}, r"audio.format must be one of \['wav', 'flac', 'ogg'\]"),
        ({"sample_rate": 0}, r"audio.sample_rate must be an integer in \[8000, 192000\]"),
        ({"sample_rate": 10**7}, "audio.sample_rate"),
        ({"soundfont": "/no/such.sf2"}, "audio.soundfont: cannot read /no/such.sf2"),
    ],
)
def test_bad_audio_settings_are_one_line(change, message, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(AudioError, match=message) as err:
        check_audio(AudioSettings(**{**SETTINGS.__dict__, **change}))
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_a_soundfont_and_a_missing_fluidsynth(tmp_path, monkeypatch):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"not a soundfont at all")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(AudioError, match="is not a SoundFont 2 file"):
        check_audio(AudioSettings(soundfont=str(fake)))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        check_audio(SETTINGS)


def cli(tool: str, *args: str, cwd: Path, root: Path) -> subprocess.CompletedProcess:
    return run_module(f"latentflow.{tool}", *args, cwd=cwd, env={"LATENTFLOW_DATA": str(root)})


@needs_audio
@pytest.mark.slow
def test_latentflow_sample_audio_on_writes_one_playable_file_per_sample(real_data_root, tmp_path):
    import json

    train = cli(
        "train",
        "experiment=jsb/af_af",
        "debug=tiny",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        root=real_data_root,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    done = cli(
        "sample",
        f"ckpt_path={ckpt}",
        "num_samples=4",
        "audio=true",  # the spelling users type: audio=on
        "audio.sample_rate=16000",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        root=real_data_root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((out / "samples.json").read_text())
    audio = [f for f in payload["files"] if f.startswith("audio/")]
    assert len(audio) == 4
    seconds_per_step = payload["step_beats"] * 60 / 120
    for name, steps in zip(sorted(audio), payload["lengths"], strict=True):
        mono, rate = read(out / name)
        assert rate == 16000 and len(mono) == round(steps * seconds_per_step * rate)
    # a text model asked for audio: one line, before any sampling
    text = cli(
        "train",
        "experiment=ptb/af_af",
        "debug=tiny",
        f"hydra.run.dir={tmp_path / 'text'}",
        cwd=tmp_path,
        root=real_data_root,
    )
    assert text.returncode == 0, text.stderr[-3000:]
    refused = cli(
        "sample",
        f"ckpt_path={tmp_path / 'text' / 'checkpoints' / 'last.ckpt'}",
        "audio=on",
        f"hydra.run.dir={tmp_path / 'text_samples'}",
        cwd=tmp_path,
        root=real_data_root,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "latentflow-sample: error: audio=on: audio is for music data; this checkpoint is a "
        "text model"
    ]
    assert not (tmp_path / "text_samples" / "samples.json").exists()


@needs_audio
@pytest.mark.slow
def test_training_logs_audio_clips_to_wandb_and_tensorboard(real_data_root, tmp_path, monkeypatch):
    """A debug=tiny music run's W&B offline files hold the clips (read back with soundfile),
    TensorBoard holds them as audio events; the callback's own time is measured."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from latentflow.lightning.callbacks import SampleLogger
    from latentflow.run import train

    from .helpers import TINY, compose_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "run"
    overrides = [*TINY, f"data.root={real_data_root}", "experiment=jsb/af_af", "test=false"]
    cfg = compose_config("train", [*overrides, "logger=[wandb,tensorboard]"], out)
    spy: list[SampleLogger] = []
    original = SampleLogger.on_validation_epoch_end

    def record(self, trainer, pl_module):
        spy.append(self)
        return original(self, trainer, pl_module)

    monkeypatch.setattr(SampleLogger, "on_validation_epoch_end", record)
    train(cfg)
    clips = sorted((out / "wandb").glob("offline-run-*/files/media/audio/**/*.wav"))
    assert len(clips) == 4
    for clip in clips:
        mono, rate = read(clip)
        assert rate == 16000 and len(mono) > 0
    (version,) = (out / "tensorboard").iterdir()
    acc = EventAccumulator(str(version), size_guidance={"audio": 0})
    acc.Reload()
    assert {f"samples/audio_{i}" for i in range(4)} <= set(acc.Tags()["audio"])
    assert spy and 0 < spy[0].seconds_spent < 60
    print(f"SampleLogger: {spy[0].seconds_spent:.2f} s for 4 samples with audio")


def test_a_failed_render_turns_the_training_audio_off_instead_of_stopping_the_fit(monkeypatch):
    import latentflow.audio
    from latentflow.lightning.callbacks import SampleLogger

    def broken(*args, **kwargs):
        raise AudioError("FluidSynth could not render: it crashed")

    monkeypatch.setattr(latentflow.audio, "render_roll", broken)
    logger = SampleLogger()
    logger._audio_settings = SETTINGS
    logger._log_audio([], [np.ones((2, 88))], 0, None)  # no exception
    assert logger.audio is False
