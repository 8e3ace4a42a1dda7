"""Hear the music: piano rolls rendered to audio with FluidSynth and a General MIDI soundfont.

    render_roll(roll, "sample.wav", settings)        # [T, 88] 0/1 -> a file you can play

A roll goes to MIDI (``latentflow.midi``), FluidSynth's command line renders the MIDI offline
with the soundfont, and the audio is cut to exactly T steps x seconds per step (FluidSynth lets
notes ring on; a 10 ms fade ends the file without a click) and peak-normalised. A roll with no
note is a silent file of the same length. Files are written to a temporary name and renamed,
so nothing half-written is left. Everything a render needs is checked first, in one line each
(``check_audio``): FluidSynth on the PATH, a readable soundfont, the format, the sample rate.

System parts: ``apt-get install fluidsynth fluid-soundfont-gm`` (the General MIDI soundfont
lands in ``/usr/share/sounds/sf2/``); Python part: ``pip install 'latentflow[audio]'``
(soundfile, to cut and write the audio).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = {"wav": "wav", "flac": "flac", "ogg": "oga"}  # our name -> FluidSynth's -T type
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)
INSTALL = "apt-get install fluidsynth fluid-soundfont-gm"
FADE_S = 0.01


class AudioError(ValueError):
    """Audio cannot be rendered as asked; the message names the key and the fix."""


@dataclass(frozen=True)
class AudioSettings:
    """How samples become sound. ``program``: the General MIDI program (None: the MIDI's own);
    ``tempo_bpm`` and ``step_beats`` place each step in time, as the MIDI file does."""

    format: str = "wav"
    sample_rate: int = 44100
    soundfont: str | None = None
    tempo_bpm: float = 120.0
    step_beats: float = 0.5
    velocity: int = 80
    program: int = 0

    @property
    def seconds_per_step(self) -> float:
        return self.step_beats * 60.0 / self.tempo_bpm

    @property
    def suffix(self) -> str:
        return f".{self.format}"


def default_soundfont() -> str | None:
    """The system's General MIDI soundfont, or None."""
    return next((p for p in SOUNDFONTS if os.path.isfile(p)), None)


def check_audio(settings: AudioSettings, key: str = "audio") -> AudioSettings:
    """``settings`` with the soundfont resolved; a one-line ``AudioError`` for anything that
    would stop a render, before any work."""
    if settings.format not in FORMATS:
        raise AudioError(f"{key}.format must be one of {list(FORMATS)}, got {settings.format!r}")
    rate = settings.sample_rate
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 192000:
        raise AudioError(f"{key}.sample_rate must be an integer in [8000, 192000], got {rate!r}")
    if shutil.which("fluidsynth") is None:
        raise AudioError(f"{key}: FluidSynth is not installed: {INSTALL}")
    try:
        import soundfile  # noqa: F401
    except ImportError:
        raise AudioError(f"{key}: needs soundfile: pip install 'latentflow[audio]'") from None
    soundfont = settings.soundfont or default_soundfont()
    if soundfont is None:
        raise AudioError(
            f"{key}.soundfont: no General MIDI soundfont found ({INSTALL}), or set "
            f"{key}.soundfont=PATH to a .sf2 file"
        )
    path = Path(soundfont)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise AudioError(f"{key}.soundfont: cannot read {soundfont}")
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise AudioError(f"{key}.soundfont: {soundfont} is not a SoundFont 2 file (.sf2)")
    return AudioSettings(**{**settings.__dict__, "soundfont": str(path)})


def render_midi(midi_path: str | Path, out_path: str | Path, settings: AudioSettings, steps: int):
    """Render a MIDI file to ``out_path``: exactly ``steps`` x seconds per step long."""
    import soundfile

    out_path = Path(out_path)
    frames = int(round(steps * settings.seconds_per_step * settings.sample_rate))
    with tempfile.TemporaryDirectory(prefix="latentflow-audio-") as work:
        raw = Path(work) / "raw.wav"
        cmd = ["fluidsynth", "-ni", "-q", "-F", str(raw), "-r", str(settings.sample_rate)]
        cmd += ["-T", "wav", "-g", "0.5", str(settings.soundfont), str(midi_path)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode or not raw.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise AudioError(f"FluidSynth could not render {midi_path}: {detail[0]}")
        audio, _ = soundfile.read(raw, dtype="float32", always_2d=True)  # [frames, channels]
    write_audio(fit_length(audio, frames, settings.sample_rate), out_path, settings)


def fit_length(audio: np.ndarray, frames: int, sample_rate: int) -> np.ndarray:
    """``audio`` cut or zero-padded to ``frames``, faded out over its last 10 ms, peak 0.9."""
    out = np.zeros((frames, audio.shape[1]), dtype=np.float32)
    n = min(frames, len(audio))
    out[:n] = audio[:n]
    fade = min(frames, int(FADE_S * sample_rate))
    if fade:
        out[frames - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    peak = float(np.abs(out).max()) if out.size else 0.0
    return out * (0.9 / peak) if peak > 1e-6 else out


def write_audio(audio: np.ndarray, out_path: Path, settings: AudioSettings) -> None:
    """Write atomically (a temporary file in the same folder, then a rename)."""
    import soundfile

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=settings.suffix, dir=out_path.parent)
    os.close(fd)
    try:
        soundfile.write(tmp, audio, settings.sample_rate, format=settings.format.upper())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_roll(roll: np.ndarray, out_path: str | Path, settings: AudioSettings) -> bool:
    """Render a [T, 88] roll to ``out_path``; False when it has no note (a silent file)."""
    from latentflow.midi import roll_to_midi

    roll = np.asarray(roll) > 0.5
    out_path = Path(out_path)
    if not roll.any():
        frames = int(round(len(roll) * settings.seconds_per_step * settings.sample_rate))
        write_audio(np.zeros((frames, 2), dtype=np.float32), out_path, settings)
        return False
    with tempfile.TemporaryDirectory(prefix="latentflow-audio-") as work:
        midi = Path(work) / "roll.mid"
        roll_to_midi(
            roll,
            midi,
            tempo_bpm=settings.tempo_bpm,
            step_beats=settings.step_beats,
            velocity=settings.velocity,
            program=settings.program,
        )
        render_midi(midi, out_path, settings, len(roll))
    return True
