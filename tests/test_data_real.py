"""Data layer on the real datasets (skipped when the data root lacks them).

Numbers are the ones published with the datasets (split sizes, lengths, notes per step).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentflow.data import download, music, ptb
from latentflow.data.datamodules import PolyphonicDataModule, PTBCharDataModule

TRAIN_SYMBOLS = "#$&'*-./0123456789<>N\\_abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def ptb_dm(real_data_root: Path) -> PTBCharDataModule:
    dm = PTBCharDataModule(root=str(real_data_root), download=False)
    dm.prepare_data()
    dm.setup()
    return dm


def _word_lines(root: Path, split: str) -> list[str]:
    text = (root / "ptb" / f"ptb.{split}.txt").read_text()
    return [line.strip() for line in text.split("\n")[:-1]]


def test_checksums_match_sha256sums(real_data_root: Path) -> None:
    listed = {}
    for line in (real_data_root / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    assert listed == download.KNOWN_SHA256
    for rel in [*map(ptb.char_file, ptb.SPLITS), *map(music.npz_file, music.MAT_NAMES)]:
        assert download.sha256_file(real_data_root / rel) == listed[rel], rel


def test_ptb_counts_vocab_and_filter(ptb_dm: PTBCharDataModule) -> None:
    assert ptb_dm.lines == {"train": 42068, "valid": 3370, "test": 3761}
    assert len(ptb_dm.vocab) == 51 and ptb_dm.num_features == 51
    assert "".join(ptb_dm.vocab.symbols[2:]) == TRAIN_SYMBOLS
    # The paper's rule T < 288.
    assert ptb_dm.dropped == {"train": 335, "valid": 14, "test": 26}
    assert len(ptb_dm.test_dataset) == 3735  # what the reference code scores
    assert ptb_dm.max_length == 287
    info = ptb_dm.describe()
    assert info["train/sequences"] == 42068 - 335 and info["valid/sequences"] == 3356


def test_ptb_reference_rule_and_unfiltered_statistics(real_data_root: Path) -> None:
    reference = ptb.load_ptb(real_data_root, max_length=289)  # the reference's T <= 288
    assert reference.dropped == {"train": 328, "valid": 14, "test": 26}
    assert reference.oov == {"train": 0, "valid": 0, "test": 0}
    everything = ptb.load_ptb(real_data_root, max_length=10**6)
    stats = {
        split: (d.num_tokens, round(float(d.lengths.mean()), 2), int(d.lengths.max()))
        for split, d in everything.datasets.items()
    }
    assert stats == {
        "train": (4975414, 118.27, 518),
        "valid": (389672, 115.63, 390),
        "test": (438662, 116.63, 491),
    }


def test_ptb_length_distribution(ptb_dm: PTBCharDataModule) -> None:
    p = ptb_dm.length_distribution
    lengths = torch.as_tensor(ptb_dm.train_dataset.lengths)
    counts = torch.bincount(lengths, minlength=288).double()
    expected = (counts[1:] + 1.0) / (counts.sum() + 287)
    assert torch.allclose(p.log_probs[1:].exp(), expected)
    for dataset in (ptb_dm.val_dataset, ptb_dm.test_dataset):
        assert torch.isfinite(p.log_prob(torch.as_tensor(dataset.lengths))).all()


@pytest.mark.parametrize("split", ["valid", "test"])
def test_ptb_eval_batches_round_trip(ptb_dm: PTBCharDataModule, split: str) -> None:
    root = Path(ptb_dm.root)
    lines = _word_lines(root, split)
    dataset = ptb_dm.val_dataset if split == "valid" else ptb_dm.test_dataset
    loader = ptb_dm.val_dataloader() if split == "valid" else ptb_dm.test_dataloader()
    seen = []
    for batch in loader:
        for row, length, index in zip(batch["x"], batch["lengths"], batch["index"], strict=True):
            number = int(dataset.line_numbers[index])
            assert ptb_dm.vocab.to_text(row[:length]) == lines[number]
            seen.append(int(index))
    assert sorted(seen) == list(range(len(dataset)))


def test_ptb_train_batches_round_trip(ptb_dm: PTBCharDataModule) -> None:
    lines = _word_lines(Path(ptb_dm.root), "train")
    dataset = ptb_dm.train_dataset
    for step, batch in enumerate(ptb_dm.train_dataloader()):
        assert batch["x"].shape == batch["mask"].shape and len(batch["x"]) <= 15
        assert batch["mask"].sum() == batch["lengths"].sum()
        for row, length, index in zip(batch["x"], batch["lengths"], batch["index"], strict=True):
            assert ptb_dm.vocab.to_text(row[:length]) == lines[int(dataset.line_numbers[index])]
        if step == 300:
            break


def test_ptb_char_train_rebuilds_from_word_file(real_data_root: Path) -> None:
    words = (real_data_root / ptb.WORD_TRAIN).read_text()
    digest = hashlib.sha256(ptb.chars_from_words(words).encode("ascii")).hexdigest()
    assert digest == download.KNOWN_SHA256[ptb.char_file("train")]


MUSIC = {
    # name: (sequences, total steps, (min, max) train length, length support)
    "jsb_chorales": ((229, 76, 77), (13807, 4602, 4725), (25, 129), 180),
    "nottingham": ((694, 173, 170), (176561, 45513, 44463), (40, 1788), 2235),
    "muse_data": ((524, 135, 124), (245202, 82755, 64339), (9, 3457), 4654),
    "piano_midi": ((87, 12, 25), (75911, 8540, 19036), (111, 3857), 4822),
}


def _expected_roll(arrays, split: str, i: int) -> torch.Tensor:
    """Independent decoding of README 2.1."""
    notes = arrays[f"{split}_notes"]
    so, qo = arrays[f"{split}_step_offsets"], arrays[f"{split}_seq_offsets"]
    roll = np.zeros((qo[i + 1] - qo[i], 88), dtype=np.float32)
    for t, g in enumerate(range(qo[i], qo[i + 1])):
        roll[t, notes[so[g] : so[g + 1]].astype(int) - 21] = 1
    return torch.from_numpy(roll)


@pytest.mark.parametrize("name", list(MUSIC))
def test_music_counts_and_round_trip(real_data_root: Path, name: str) -> None:
    counts, steps, (shortest, longest), support = MUSIC[name]
    dm = PolyphonicDataModule(name, root=str(real_data_root), download=False)
    dm.prepare_data()
    dm.setup()
    datasets = (dm.train_dataset, dm.val_dataset, dm.test_dataset)
    assert tuple(len(d) for d in datasets) == counts
    assert tuple(d.num_steps for d in datasets) == steps
    assert (dm.train_dataset.lengths.min(), dm.train_dataset.lengths.max()) == (shortest, longest)
    assert dm.max_length == support == dm.length_distribution.max_length
    assert support == math.ceil(
        1.25 * max(dm.train_dataset.lengths.max(), dm.val_dataset.lengths.max())
    )
    for d in datasets:
        assert torch.isfinite(dm.length_distribution.log_prob(torch.as_tensor(d.lengths))).all()
    with np.load(real_data_root / music.npz_file(name), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    loaders = {"valid": dm.val_dataloader(), "test": dm.test_dataloader()}
    if name in ("jsb_chorales", "nottingham"):
        loaders["train"] = dm.train_dataloader()
    for split, loader in loaders.items():
        seen = 0
        for batch in loader:
            assert batch["x"].shape[:2] == batch["mask"].shape and batch["x"].shape[2] == 88
            for roll, length, index in zip(
                batch["x"], batch["lengths"], batch["index"], strict=True
            ):
                assert roll[length:].sum() == 0
                assert torch.equal(roll[:length], _expected_roll(arrays, split, int(index)))
                seen += 1
        assert seen == len(arrays[f"{split}_seq_offsets"]) - 1


@pytest.mark.parametrize("name", list(MUSIC))
def test_music_npz_rebuilds_from_mat(real_data_root: Path, name: str, tmp_path: Path) -> None:
    pytest.importorskip("scipy.io")
    out = tmp_path / f"{name}.npz"
    music.write_npz(out, music.arrays_from_mat(real_data_root / music.mat_file(name)))
    assert download.sha256_file(out) == download.KNOWN_SHA256[music.npz_file(name)]
