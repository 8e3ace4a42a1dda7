"""Piano rolls <-> standard MIDI files (mido), and piano-roll pictures (matplotlib, Agg).

A roll is a binary array ``[T, 88]``: column j is MIDI note 21 + j (A0..C8), one row per time
step, as in the datasets (``latentflow.data.music``). The datasets step every eighth note, or
every quarter note for JSB chorales (``default_step_beats``).

A roll cannot tell a held note from a repeated one, so a run of consecutive active steps of a
key becomes one note; reading the file back gives the same roll (trailing silent steps
included: the track ends at T steps).

>>> import numpy as np
>>> roll = np.zeros((6, 88), dtype=bool)
>>> roll[0:3, 39] = roll[4, 43] = True  # C4 held for 3 steps, then E4
>>> mid = roll_to_midi(roll)
>>> bool((midi_to_roll(mid) == roll).all())
True
"""

from __future__ import annotations

import math
from pathlib import Path

import mido
import numpy as np

from latentflow.data.music import LOWEST_NOTE, NUM_NOTES

TICKS_PER_BEAT = 480


def default_step_beats(dataset: str | None) -> float:
    """Beats per time step: 1 (quarter notes) for JSB chorales, 0.5 (eighths) otherwise."""
    return 1.0 if dataset == "jsb_chorales" else 0.5


def _ticks_per_step(step_beats: float, ticks_per_beat: int) -> int:
    ticks = step_beats * ticks_per_beat
    if step_beats <= 0 or ticks != int(ticks):
        raise ValueError(
            f"midi.step_beats must be > 0 and a whole number of ticks "
            f"({ticks_per_beat} per beat), got {step_beats}"
        )
    return int(ticks)


def _check_roll(roll: np.ndarray) -> np.ndarray:
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != NUM_NOTES:
        raise ValueError(f"a piano roll is [T, {NUM_NOTES}], got shape {roll.shape}")
    return roll > 0.5


def roll_to_midi(
    roll: np.ndarray,
    path: str | Path | None = None,
    *,
    tempo_bpm: float = 120.0,
    step_beats: float = 0.5,
    velocity: int = 80,
    program: int = 0,
    ticks_per_beat: int = TICKS_PER_BEAT,
) -> mido.MidiFile:
    """A one-track MIDI file playing ``roll`` [T, 88] (saved to ``path`` when given).

    Each run of consecutive active steps of a key is one note; ``step_beats`` beats per step
    at ``tempo_bpm``; ``program`` is the General MIDI instrument (0: acoustic grand piano).
    """
    on = _check_roll(roll)
    if not 1 <= velocity <= 127:
        raise ValueError(f"midi.velocity must lie in 1..127, got {velocity}")
    if not 0 <= program <= 127:
        raise ValueError(f"midi.program must lie in 0..127, got {program}")
    if tempo_bpm <= 0:
        raise ValueError(f"midi.tempo_bpm must be > 0, got {tempo_bpm}")
    step = _ticks_per_step(step_beats, ticks_per_beat)
    T = on.shape[0]
    # Note boundaries: +1 where a run starts, -1 one step after it ends.
    padded = np.zeros((T + 2, NUM_NOTES), dtype=np.int8)
    padded[1:-1] = on
    change = np.diff(padded, axis=0)  # [T + 1, 88]
    events = []  # (tick, note-offs first, key, message type)
    for t, key in zip(*np.nonzero(change), strict=True):
        kind = "note_on" if change[t, key] > 0 else "note_off"
        events.append((int(t) * step, kind == "note_on", int(key), kind))
    events.sort()
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    now = 0
    for tick, _, key, kind in events:
        vel = velocity if kind == "note_on" else 0
        track.append(mido.Message(kind, note=LOWEST_NOTE + key, velocity=vel, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=T * step - now))
    mid = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    mid.tracks.append(track)
    if path is not None:
        mid.save(str(path))
    return mid


DRUM_CHANNEL = 9  # General MIDI channel 10 (0-based 9): percussion, not pitches


def read_midi(
    source: str | Path | mido.MidiFile, step_beats: float = 0.5, drums: bool = False
) -> tuple[np.ndarray, int]:
    """The piano roll [T, 88] (bool) of a MIDI file, ``step_beats`` beats per step, and the
    number of notes outside the piano's 88 keys (dropped, not clipped: a clipped note would
    sound at a wrong pitch).

    Steps are in beats (ticks), so tempo and time-signature changes move no note. A note
    covers the steps its sounding interval overlaps; T runs to the end of the longest track.
    The percussion channel (10) is skipped unless ``drums``.
    """
    mid = source if isinstance(source, mido.MidiFile) else mido.MidiFile(str(source))
    step = _ticks_per_step(step_beats, mid.ticks_per_beat)
    notes = []  # (key, start tick, end tick)
    end_tick = 0
    for track in mid.tracks:
        tick, started = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type not in ("note_on", "note_off"):
                continue
            if msg.channel == DRUM_CHANNEL and not drums:
                continue
            if msg.type == "note_on" and msg.velocity > 0:
                started.setdefault((msg.channel, msg.note), tick)
            else:
                start = started.pop((msg.channel, msg.note), None)
                if start is not None:
                    notes.append((msg.note - LOWEST_NOTE, start, tick))
        notes.extend((note - LOWEST_NOTE, start, tick) for (_, note), start in started.items())
        end_tick = max(end_tick, tick)
    roll = np.zeros((math.ceil(end_tick / step), NUM_NOTES), dtype=bool)
    outside = 0
    for key, start, stop in notes:
        if not 0 <= key < NUM_NOTES:
            outside += 1
        elif stop > start:
            roll[start // step : math.ceil(stop / step), key] = True
    return roll, outside


def midi_to_roll(source: str | Path | mido.MidiFile, step_beats: float = 0.5) -> np.ndarray:
    """The piano roll [T, 88] (bool) of a MIDI file (``read_midi``; every channel)."""
    return read_midi(source, step_beats, drums=True)[0]


def plot_roll(
    roll: np.ndarray, path: str | Path, title: str | None = None, step_beats: float = 0.5
) -> None:
    """Save a piano-roll picture of ``roll`` [T, 88]: time across, pitch up (C notes named)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    on = _check_roll(roll)
    T = on.shape[0]
    fig = Figure(figsize=(min(4.0 + T / 16.0, 24.0), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(
        on.T,
        origin="lower",
        aspect="auto",
        cmap="Greys",
        interpolation="nearest",
        extent=(0, T * step_beats, LOWEST_NOTE - 0.5, LOWEST_NOTE + NUM_NOTES - 0.5),
    )
    c_notes = [n for n in range(LOWEST_NOTE, LOWEST_NOTE + NUM_NOTES) if n % 12 == 0]
    ax.set_yticks(c_notes, [f"C{n // 12 - 1}" for n in c_notes])
    ax.set_xlabel("beats")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(str(path))
