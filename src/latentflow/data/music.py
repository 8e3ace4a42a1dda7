"""Polyphonic music (Boulanger-Lewandowski et al. 2012) as 88-key binary piano rolls.

`music/<name>.npz` stores each split compactly (as the download rebuilds it from the .mat):
`{split}_notes` (MIDI numbers 21..108), `{split}_step_offsets` and `{split}_seq_offsets`. It
is read with `numpy.load(allow_pickle=False)` only. Roll column j is MIDI note 21 + j. When the
.npz is absent, `prepare_music` downloads the .mat conversion of the original pickles and
rebuilds the .npz from it byte for byte (so its known checksum is checked too).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from latentflow.data.download import (
    KNOWN_SHA256,
    ensure_downloaded,
    missing_error,
    verify_file,
    write_atomic,
)
from latentflow.data.errors import DataError
from latentflow.data.splits import SPLITS

LOWEST_NOTE = 21  # A0
HIGHEST_NOTE = 108  # C8
NUM_NOTES = HIGHEST_NOTE - LOWEST_NOTE + 1  # 88
MAT_NAMES = {
    "jsb_chorales": "JSB_Chorales",
    "nottingham": "Nottingham",
    "muse_data": "MuseData",
    "piano_midi": "Piano_midi",
}
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def npz_file(name: str) -> str:
    """Path of a dataset's .npz, relative to the data root."""
    return f"music/{name}.npz"


def mat_file(name: str) -> str:
    """Path of a dataset's original .mat, relative to the data root."""
    return f"music/original/{MAT_NAMES[name]}.mat"


def check_name(name: str) -> None:
    if name not in MAT_NAMES:
        raise DataError(f"data.name must be one of {sorted(MAT_NAMES)}, got {name!r}")


class MusicDataset(Dataset):
    """The sequences of one split; item `i` is `(i, FloatTensor[T_i, 88])`, built on access.

    Args:
        notes: [total notes] MIDI note numbers, 21..108.
        step_offsets: [total steps + 1] global step g owns notes[step_offsets[g]:...[g + 1]].
        seq_offsets: [N + 1] sequence i owns global steps seq_offsets[i]:seq_offsets[i + 1].
    """

    def __init__(
        self,
        notes: np.ndarray,
        step_offsets: np.ndarray,
        seq_offsets: np.ndarray,
        path: str = "",
    ) -> None:
        self.notes = np.asarray(notes, dtype=np.int64)  # [total notes]
        self.step_offsets = np.asarray(step_offsets, dtype=np.int64)  # [G + 1]
        self.seq_offsets = np.asarray(seq_offsets, dtype=np.int64)  # [N + 1]
        self.lengths = np.diff(self.seq_offsets)  # [N]
        self.path = path
        # Global step of every note, so one sequence expands with a single scatter.
        counts = np.diff(self.step_offsets)  # [G]
        self._columns = torch.from_numpy(self.notes - LOWEST_NOTE)  # [total notes]
        self._note_step = torch.from_numpy(np.repeat(np.arange(len(counts)), counts))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> tuple[int, Tensor]:
        return i, self.roll(i)

    @property
    def num_steps(self) -> int:
        return int(self.seq_offsets[-1] - self.seq_offsets[0])

    def roll(self, i: int) -> Tensor:
        """The piano roll of sequence i: FloatTensor[T_i, 88] of 0/1."""
        g0, g1 = int(self.seq_offsets[i]), int(self.seq_offsets[i + 1])
        n0, n1 = int(self.step_offsets[g0]), int(self.step_offsets[g1])
        roll = torch.zeros(g1 - g0, NUM_NOTES)  # [T, 88]
        roll[self._note_step[n0:n1] - g0, self._columns[n0:n1]] = 1.0
        return roll

    def steps(self, i: int) -> list[list[int]]:
        """Sequence i as lists of active MIDI notes per time step (as stored)."""
        g0, g1 = int(self.seq_offsets[i]), int(self.seq_offsets[i + 1])
        so = self.step_offsets
        return [self.notes[so[g] : so[g + 1]].tolist() for g in range(g0, g1)]

    def subset(self, keep: np.ndarray) -> MusicDataset:
        """The sequences at indices ``keep`` (ascending), renumbered from 0."""
        notes, steps, seqs = [], [0], [0]
        for i in np.asarray(keep, dtype=np.int64).tolist():
            g0, g1 = int(self.seq_offsets[i]), int(self.seq_offsets[i + 1])
            n0, n1 = int(self.step_offsets[g0]), int(self.step_offsets[g1])
            notes.append(self.notes[n0:n1])
            counts = np.diff(self.step_offsets[g0 : g1 + 1])  # notes per step
            steps.extend((steps[-1] + np.cumsum(counts)).tolist())
            seqs.append(seqs[-1] + g1 - g0)
        flat = np.concatenate(notes) if notes else np.zeros(0, dtype=np.int64)
        return MusicDataset(flat, np.asarray(steps), np.asarray(seqs), self.path)

    def head(self, n: int) -> MusicDataset:
        """The first `n` sequences."""
        n = min(n, len(self))
        steps = int(self.seq_offsets[n])
        return MusicDataset(
            self.notes[: self.step_offsets[steps]],
            self.step_offsets[: steps + 1],
            self.seq_offsets[: n + 1],
            self.path,
        )


def roll_to_steps(roll: Tensor) -> list[list[int]]:
    """A [T, 88] 0/1 roll back to lists of MIDI notes per step (ascending)."""
    return [(torch.nonzero(row).flatten() + LOWEST_NOTE).tolist() for row in roll]


def read_npz(path: Path) -> dict[str, MusicDataset]:
    """Load and check the three splits of a music .npz (no pickles)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise DataError(
            f"{path}: not an .npz archive (it does not start with a zip header): a corrupt or "
            "foreign file; delete it and run prepare_data() to fetch it again"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except _NPZ_ERRORS as err:
        raise DataError(
            f"{path}: cannot read the .npz ({type(err).__name__}: {err}); the file is truncated "
            "or corrupt: delete it and run prepare_data() to fetch it again"
        ) from err
    return {split: _check_split(path, split, arrays) for split in SPLITS}


def _check_split(path: Path, split: str, arrays: Mapping[str, np.ndarray]) -> MusicDataset:
    keys = [f"{split}_notes", f"{split}_step_offsets", f"{split}_seq_offsets"]
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise DataError(f"{path}: missing arrays {absent}")
    notes, steps, seqs = (arrays[k] for k in keys)
    for key, a in zip(keys, (notes, steps, seqs), strict=True):
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{path}: {key} must be a 1-D integer array, got {a.dtype} {a.shape}")
    if len(seqs) < 2 or seqs[0] != 0 or np.any(np.diff(seqs) < 1):
        raise DataError(f"{path}: {split}_seq_offsets must start at 0 and give lengths >= 1")
    if (
        len(steps) != seqs[-1] + 1
        or steps[0] != 0
        or np.any(np.diff(steps) < 0)
        or steps[-1] != len(notes)
    ):
        raise DataError(f"{path}: {split}_step_offsets do not match the notes and sequences")
    step_of_note = np.repeat(np.arange(len(steps) - 1), np.diff(steps))  # [total notes]
    unordered = np.flatnonzero((np.diff(step_of_note) == 0) & (np.diff(notes) <= 0))
    if unordered.size:
        k = int(unordered[0]) + 1
        g = int(step_of_note[k])
        i = int(np.searchsorted(seqs, g, side="right")) - 1
        dup = int(notes[k]) == int(notes[k - 1])
        raise DataError(
            f"{path}: {'note ' + str(int(notes[k])) + ' twice' if dup else 'notes out of order'} "
            f"in {split} sequence {i}, step {g - int(seqs[i])} ({unordered.size} such places): "
            "each step lists distinct notes in ascending order"
        )
    bad = np.flatnonzero((notes < LOWEST_NOTE) | (notes > HIGHEST_NOTE))
    if bad.size:
        k = int(bad[0])
        g = int(np.searchsorted(steps, k, side="right")) - 1
        i = int(np.searchsorted(seqs, g, side="right")) - 1
        raise DataError(
            f"{path}: note {int(notes[k])} outside the piano range {LOWEST_NOTE}..{HIGHEST_NOTE} "
            f"in {split} sequence {i}, step {g - int(seqs[i])} ({bad.size} such notes)"
        )
    return MusicDataset(notes, steps, seqs, str(path))


def rolls_to_arrays(rolls: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """One split's stored arrays (``notes``, ``step_offsets``, ``seq_offsets``, module
    docstring) from its piano rolls, each [T, 88] of 0/1."""
    notes, steps, seqs = [], [0], [0]
    for roll in rolls:
        t, col = np.nonzero(roll)  # row-major: ascending notes within a step
        notes.append((col + LOWEST_NOTE).astype(np.uint8))
        per_step = np.bincount(t, minlength=roll.shape[0])  # [T]
        steps.extend((steps[-1] + np.cumsum(per_step)).tolist())
        seqs.append(seqs[-1] + roll.shape[0])
    empty = np.zeros(0, dtype=np.uint8)
    return {
        "notes": np.concatenate(notes) if notes else empty,
        "step_offsets": np.asarray(steps, dtype=np.int64),
        "seq_offsets": np.asarray(seqs, dtype=np.int64),
    }


def check_roll(path: Path, key: str, i: int, roll: np.ndarray) -> None:
    """A .mat's sequence ``i`` must be a T x 88 matrix of 0/1."""
    if roll.ndim != 2 or roll.shape[1] != NUM_NOTES:
        raise DataError(
            f"{path}: {key} sequence {i} must be a T x {NUM_NOTES} matrix "
            f"(column j = MIDI note {LOWEST_NOTE} + j), got shape {roll.shape}"
        )
    if not np.isin(roll, (0, 1)).all():
        t, j = (int(v[0]) for v in np.nonzero(~np.isin(roll, (0, 1))))
        raise DataError(
            f"{path}: {key} sequence {i} holds {float(roll[t, j])} at step {t}, note "
            f"{LOWEST_NOTE + j}: a piano roll is 0/1 (shape {roll.shape} is right)"
        )


def arrays_from_mat(path: Path) -> dict[str, np.ndarray]:
    """The .npz arrays from a .mat of 1 x N cells of T x 88 0/1 matrices."""
    try:
        import scipy.io
    except ImportError as err:
        raise DataError(f"{path}: reading a .mat needs scipy (pip install scipy)") from err
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises many types for a corrupt file
        raise DataError(f"{path}: cannot read the .mat ({type(err).__name__}: {err})") from err
    arrays = {}
    for split in SPLITS:
        key = f"{split}data"
        if key not in mat:
            raise DataError(f"{path}: missing variable {key!r}")
        rolls = [np.asarray(roll) for roll in np.asarray(mat[key]).ravel()]
        for i, roll in enumerate(rolls):
            check_roll(path, key, i, roll)
        for name, array in rolls_to_arrays(rolls).items():
            arrays[f"{split}_{name}"] = array
    return arrays


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an .npz deterministically (fixed zip dates), as the published data files were
    written (so their SHA-256 is reproducible)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    path.write_bytes(buffer.getvalue())


def prepare_music(
    root: Path,
    name: str,
    download: bool = True,
    base_url: str | None = None,
    checksums: Mapping[str, str] = KNOWN_SHA256,
    verify: bool = True,
) -> None:
    """Make sure `music/<name>.npz` is under `root`, building it from the downloaded .mat; with
    `verify`, a file already there is checked against its known SHA-256 (once per file)."""
    check_name(name)
    rel = npz_file(name)
    if (root / rel).exists():
        if verify:
            verify_file(root / rel, rel, checksums)
        return
    if not download:
        raise missing_error(root, [rel], reason="data.download is off")
    mat_path = ensure_downloaded(root, mat_file(name), base_url, checksums)

    def write(tmp: Path) -> None:
        write_npz(tmp, arrays_from_mat(mat_path))

    write_atomic(root / rel, write, checksums.get(rel), what=f"converted from {mat_path}")


def load_music(
    root: Path, name: str, limit_sequences: int | None = None
) -> dict[str, MusicDataset]:
    """The three splits of `music/<name>.npz`; `limit_sequences` keeps the first N of each."""
    check_name(name)
    rel = npz_file(name)
    if not (root / rel).exists():
        raise missing_error(root, [rel], reason="run prepare_data() with data.download on")
    splits = read_npz(root / rel)
    if limit_sequences is not None:
        splits = {s: d.head(limit_sequences) for s, d in splits.items()}
    return splits
