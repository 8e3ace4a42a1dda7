"""Your own music: a folder of MIDI files as 88-key piano rolls (``data=midi_folder``).

Every ``.mid``/``.midi`` file under ``path`` (recursively) is quantised to ``step_beats`` beats
per step (``latentflow.midi.read_midi``: steps in beats, so tempo and time-signature changes move
no note; the percussion channel 10 is skipped; notes outside the 88 keys are dropped and
counted). Files that cannot be parsed, or hold no note, are skipped and listed in one warning;
none left is an error. The files are split into train/valid/test by a seeded shuffle.

The parsed rolls are cached once as an ``.npz`` in the layout of the built-in music datasets
(``latentflow.data.music``; ``{split}_files`` names the source files), keyed by a hash of the
file list (paths, sizes, modification times) and the settings: a changed folder or setting
builds a new cache; a cache that cannot be read (cut short) is rebuilt; the cache is written
to a temporary file and renamed, so a half-written one can never be read.
``latentflow-prepare midi DIR OUT.npz`` does the same conversion explicitly, and ``path`` may
name such an ``.npz`` directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from latentflow.data import music
from latentflow.data.base import BucketedDataModule, LoaderSettings
from latentflow.data.batching import collate_music
from latentflow.data.checks import check_count
from latentflow.data.download import cache_dir, write_atomic
from latentflow.data.errors import DataError
from latentflow.data.lengths import LengthDistribution, fit_length_distribution
from latentflow.data.splits import check_split, deal_splits

log = logging.getLogger(__name__)
SUFFIXES = (".mid", ".midi")
CACHE_VERSION = 1


def midi_files(folder: Path) -> list[Path]:
    """The MIDI files under ``folder``, recursively, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_rolls(
    folder: Path, files: Sequence[Path], step_beats: float
) -> tuple[list[np.ndarray], list[str], dict[str, str], int]:
    """The piano rolls of the files that hold notes, their names (relative to ``folder``), the
    files skipped (name -> why) and the count of notes dropped outside the 88 keys."""
    from latentflow.midi import read_midi

    rolls, used, skipped, outside = [], [], {}, 0
    for path in files:
        name = str(path.relative_to(folder))
        try:
            roll, dropped = read_midi(path, step_beats)
        except Exception as err:  # mido raises many types for a broken file
            skipped[name] = (
                f"{type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''}"
            )
            continue
        if not roll.any():
            skipped[name] = "no notes (percussion only, or empty)"
            continue
        rolls.append(roll)
        used.append(name)
        outside += dropped
    return rolls, used, skipped, outside


def convert_folder(
    folder: str | Path,
    step_beats: float = 0.5,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The .npz arrays of a MIDI folder (module docstring) and a report: files used, skipped
    (with why), notes dropped outside the 88 keys."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    ratios = check_split(split)
    files = midi_files(folder)
    if not files:
        raise DataError(f"data.path: no .mid or .midi file under {folder}")
    rolls, used, skipped, outside = read_rolls(folder, files, step_beats)
    if skipped:
        shown = "; ".join(f"{k} ({v})" for k, v in list(skipped.items())[:5])
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        log.warning("skipped %d of %d MIDI files: %s%s", len(skipped), len(files), shown, more)
    if not rolls:
        raise DataError(
            f"data.path: none of the {len(files)} MIDI files under {folder} holds notes that "
            "can be read"
        )
    if outside:
        log.warning("dropped %d notes outside the 88 piano keys (not clipped)", outside)
    order = np.random.default_rng(seed).permutation(len(rolls)).tolist()
    arrays: dict[str, np.ndarray] = {}
    for name, picked in deal_splits(order, ratios, f"{len(rolls)} MIDI files").items():
        picked = sorted(picked)
        for key, value in music.rolls_to_arrays([rolls[i] for i in picked]).items():
            arrays[f"{name}_{key}"] = value
        arrays[f"{name}_files"] = np.array([used[i] for i in picked])
    report = {"files": len(files), "used": len(used), "skipped": skipped, "outside": outside}
    return arrays, report


def cache_key(folder: Path, step_beats: float, split: Sequence[float], seed: int) -> str:
    """A hash of the file list (paths, sizes, modification times) and the settings."""
    listing = [
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in midi_files(folder)
    ]
    settings = {"v": CACHE_VERSION, "step": step_beats, "split": list(split), "seed": seed}
    blob = json.dumps([listing, settings], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the .npz atomically (temporary file, then rename)."""
    write_atomic(path, lambda tmp: music.write_npz(tmp, arrays), None, what="MIDI folder cache")


class TransposedDataset(Dataset):
    """Training sequences shifted by a random whole number of semitones in [low, high], drawn
    per (seed, epoch, sequence): the same shift after a resume. Notes pushed past the 88 keys
    fall off. ``epoch`` comes from the batch sampler (``bind_sampler``)."""

    def __init__(self, base: music.MusicDataset, low: int, high: int, seed: int) -> None:
        self.base, self.low, self.high, self.seed = base, low, high, seed
        self.lengths = base.lengths
        self._sampler: Any = None

    def bind_sampler(self, sampler: Any) -> None:
        self._sampler = sampler

    def __len__(self) -> int:
        return len(self.base)

    def shift(self, i: int) -> int:
        epoch = int(getattr(self._sampler, "epoch", 0))
        rng = np.random.default_rng([self.seed, epoch, i, 17])
        return int(rng.integers(self.low, self.high + 1))

    def __getitem__(self, i: int) -> tuple[int, Tensor]:
        index, roll = self.base[i]
        k = self.shift(i)
        if k == 0:
            return index, roll
        out = torch.zeros_like(roll)
        if k > 0:
            out[:, k:] = roll[:, :-k]
        else:
            out[:, :k] = roll[:, -k:]
        return index, out


class MidiFolderDataModule(BucketedDataModule):
    """A folder of MIDI files (or its prepared ``.npz``) as piano rolls (module docstring).

    Args:
        path: the folder (searched recursively), or an ``.npz`` from ``latentflow-prepare``.
        step_beats: beats per time step (0.5: eighth notes; 1: quarter notes, as JSB).
        split: train/valid/test ratios, by file, after a shuffle seeded by ``seed``.
        transpose: ``[low, high]`` semitones: each training sequence is shifted by a random
            whole number in that range every epoch (augmentation); None for none.
        max_length: keep sequences of at most this many steps (None: all); dropped ones are
            counted in the log.
        cache: folder of the parsed-roll caches (None: ``~/.cache/latentflow/midi``).
        Others as in ``PolyphonicDataModule``.
    """

    kind = "music"

    def __init__(
        self,
        path: str,
        step_beats: float = 0.5,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        transpose: Sequence[int] | None = None,
        max_length: int | None = None,
        cache: str | None = None,
        batch_size: int | None = 5,
        max_tokens: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        length_smoothing: float = 1.0,
        limit_sequences: int | None = None,
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
        super().__init__(loader)
        if path is None or str(path) == "":
            raise DataError("data.path: set it to a folder of MIDI files (or a prepared .npz)")
        if not step_beats > 0:
            raise DataError(f"data.step_beats must be > 0, got {step_beats}")
        self.split = check_split(split)
        if transpose is not None:
            if len(transpose) != 2 or int(transpose[0]) > int(transpose[1]):
                raise DataError(f"data.transpose must be [low, high] semitones, got {transpose}")
            if max(abs(int(t)) for t in transpose) > 87:  # 88 keys: a larger shift empties a roll
                raise DataError(
                    f"data.transpose must stay within [-87, 87] semitones, got {transpose}"
                )
            transpose = [int(transpose[0]), int(transpose[1])]
        check_count("max_length", max_length)
        self.save_hyperparameters()
        self.path, self.step_beats, self.transpose = Path(path).expanduser(), step_beats, transpose
        self.length_limit, self.cache = max_length, cache
        self.num_features = music.NUM_NOTES
        self.collate_fn = collate_music

    def cache_file(self) -> Path:
        folder = Path(self.cache).expanduser() if self.cache else cache_dir() / "midi"
        key = cache_key(self.path, self.step_beats, self.split, self.seed)
        return folder / f"{self.path.name}-{key}.npz"

    def prepare_data(self) -> None:
        """Parse the folder into its cache unless a readable cache of these settings exists."""
        if self.path.suffix == ".npz":
            if not self.path.is_file():
                raise DataError(f"data.path: no file {self.path}")
            return
        if not self.path.exists():
            raise DataError(f"data.path: {self.path} does not exist")
        target = self.cache_file()
        if target.is_file():
            try:
                music.read_npz(target)
                return
            except DataError as err:
                log.warning("rebuilding the MIDI cache %s: %s", target, err)
        arrays, report = convert_folder(self.path, self.step_beats, self.split, self.seed)
        write_cache(target, arrays)
        log.info("MIDI folder %s: %d files used -> %s", self.path, report["used"], target)

    def read_splits(self) -> dict[str, Any]:
        if self.path.suffix != ".npz":
            self.prepare_data()
        splits = music.read_npz(self.path if self.path.suffix == ".npz" else self.cache_file())
        for name, dataset in splits.items():
            if self.length_limit is not None:
                keep = np.flatnonzero(dataset.lengths <= self.length_limit)
                self.sequences_read[name] = len(dataset)
                self.dropped[name] = len(dataset) - len(keep)
                dataset = dataset.subset(keep)
            if self.limit_sequences is not None:
                dataset = dataset.head(self.limit_sequences)
            splits[name] = dataset
        if any(self.dropped.values()):
            log.warning("data.max_length=%s dropped %s sequences", self.length_limit, self.dropped)
        if self.transpose is not None and any(self.transpose):
            splits["train"] = TransposedDataset(splits["train"], *self.transpose, self.seed)
        return splits

    def fit_lengths(self) -> LengthDistribution:
        """Train + valid lengths over 1..ceil(1.25 x their longest), as the built-in music."""
        return fit_length_distribution(
            [self.train_dataset.lengths, self.val_dataset.lengths], self.length_smoothing
        )
