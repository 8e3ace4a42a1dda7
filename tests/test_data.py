"""Data layer on small generated files: vocab, p(T), batching, PTB, music, bad input, download."""

from __future__ import annotations

import doctest
import functools
import hashlib
import io
import logging
import math
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from latentflow.data import download, lengths, music, ptb, vocab
from latentflow.data.batching import BucketBatchSampler, collate_music, collate_text
from latentflow.data.datamodules import PolyphonicDataModule, PTBCharDataModule
from latentflow.data.download import DataError
from latentflow.data.lengths import LengthDistribution
from latentflow.data.vocab import CharVocab
from latentflow.lightning.checkpoint_io import load_checkpoint_file

# ---------------------------------------------------------------------------------------------
# Generated data
# ---------------------------------------------------------------------------------------------

LETTERS = "abcdefgh"


def _word_lines(rng: np.random.Generator, n: int, extra: str = "") -> list[str]:
    """Lines in the format of ptb.{split}.txt: ' ' + words + ' ', at most 15 characters."""
    lines = []
    for _ in range(n):
        words = [
            "".join(rng.choice(list(LETTERS)) for _ in range(rng.integers(1, 4)))
            for _ in range(rng.integers(1, 5))
        ]
        lines.append(" " + " ".join(words) + " ")
    if extra:
        lines.append(" " + extra + " ")
    return lines


def _word_text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def make_ptb(root: Path, seed: int = 0) -> dict[str, list[str]]:
    """Write small PTB char files under root/ptb; return the word lines per split.

    Train has a 19-token and a 20-token sentence (for max_length=20), valid a 25-token one and
    test the out-of-vocabulary characters "Q" and "Z".
    """
    rng = np.random.default_rng(seed)
    lines = {
        "train": _word_lines(rng, 40, extra="abcdefgh abcdefgh a")  # 19 tokens
        + [" abcdefgh abcdefgh ab "],  # 20 tokens
        "valid": _word_lines(rng, 12, extra="abcdefgh abcdefgh abcdefg"),  # 25 tokens
        "test": _word_lines(rng, 12, extra="aQb Zc"),
    }
    (root / "ptb").mkdir(parents=True, exist_ok=True)
    for split, split_lines in lines.items():
        text = ptb.chars_from_words(_word_text(split_lines))
        (root / ptb.char_file(split)).write_text(text)
    return lines


def music_arrays(seed: int = 0, counts=(6, 3, 4), max_len: int = 12) -> dict[str, np.ndarray]:
    """Random compact music arrays (README 2.1 format)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(music.SPLITS, counts, strict=True):
        notes, steps, seqs = [], [0], [0]
        for _ in range(count):
            length = int(rng.integers(1, max_len + 1))
            for _ in range(length):
                chord = np.sort(rng.choice(np.arange(21, 109), rng.integers(0, 5), replace=False))
                notes.extend(chord.tolist())
                steps.append(steps[-1] + len(chord))
            seqs.append(seqs[-1] + length)
        arrays[f"{split}_notes"] = np.asarray(notes, dtype=np.uint8)
        arrays[f"{split}_step_offsets"] = np.asarray(steps, dtype=np.int64)
        arrays[f"{split}_seq_offsets"] = np.asarray(seqs, dtype=np.int64)
    return arrays


def steps_of(arrays: dict[str, np.ndarray], split: str, i: int) -> list[list[int]]:
    notes = arrays[f"{split}_notes"]
    so, qo = arrays[f"{split}_step_offsets"], arrays[f"{split}_seq_offsets"]
    return [notes[so[g] : so[g + 1]].tolist() for g in range(qo[i], qo[i + 1])]


@pytest.fixture
def ptb_root(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    return tmp_path, make_ptb(tmp_path)


@pytest.fixture
def music_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = music_arrays()
    (tmp_path / "music").mkdir()
    music.write_npz(tmp_path / "music" / "jsb_chorales.npz", arrays)
    return tmp_path, arrays


def test_doctests() -> None:
    for module in (vocab, lengths):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------


def test_vocab_build_encode_decode() -> None:
    v = CharVocab.build([list("b_a"), list("c")])
    assert v.symbols == ["<pad>", "<unk>", "_", "a", "b", "c"]
    assert len(v) == 6 and (v.PAD, v.UNK) == (0, 1)
    ids = v.encode(list("a_bz"))
    assert ids == [3, 2, 4, 1]
    assert v.decode(torch.tensor(ids)) == ["a", "_", "b", "<unk>"]
    assert v.to_text([3, 2, 4, 0, 0]) == "a b"
    assert CharVocab(list(v.symbols)).symbols == v.symbols  # rebuilt from hyperparameters


def test_vocab_rejects_bad_symbols() -> None:
    with pytest.raises(ValueError, match="<pad>"):
        CharVocab(["a", "<pad>", "<unk>"])
    with pytest.raises(ValueError, match="unique"):
        CharVocab(["<pad>", "<unk>", "a", "a"])


# ---------------------------------------------------------------------------------------------
# Length distribution
# ---------------------------------------------------------------------------------------------


def test_length_distribution_add_one() -> None:
    p = LengthDistribution.from_lengths([1, 3, 3, 3], max_length=5, smoothing=1.0)
    expected = torch.tensor([0, 2, 1, 4, 1, 1], dtype=torch.float64) / 9
    assert torch.allclose(p.log_probs.exp(), expected)
    assert p.log_probs[0] == -math.inf and p.max_length == 5
    out = p.log_prob(torch.tensor([[3, 0], [6, 2]]))
    assert out.shape == (2, 2)
    assert out[0, 0] == pytest.approx(math.log(4 / 9))
    assert out[0, 1] == -math.inf and out[1, 0] == -math.inf  # outside 1..max_length
    assert torch.isfinite(out[1, 1])  # unseen length, finite by smoothing
    unsmoothed = LengthDistribution.from_lengths([1, 3], max_length=5, smoothing=0.0)
    assert unsmoothed.log_prob(torch.tensor([2])).item() == -math.inf


def test_length_distribution_sample() -> None:
    p = LengthDistribution.from_lengths([2] * 90 + [4] * 10, max_length=6, smoothing=0.0)
    a = p.sample(2000, generator=torch.Generator().manual_seed(1))
    b = p.sample(2000, generator=torch.Generator().manual_seed(1))
    assert a.dtype == torch.long and a.shape == (2000,) and torch.equal(a, b)
    assert set(a.unique().tolist()) == {2, 4}
    assert (a == 2).float().mean().item() == pytest.approx(0.9, abs=0.03)


def test_length_distribution_state_round_trip() -> None:
    p = LengthDistribution.from_lengths([5, 6, 6, 9], max_length=12, smoothing=0.5)
    fresh = LengthDistribution(torch.zeros(13), 0.5)
    fresh.load_state_dict(p.state_dict())
    lengths_ = torch.arange(0, 15)
    assert torch.equal(fresh.log_prob(lengths_), p.log_prob(lengths_))
    buffer = io.BytesIO()
    torch.save(p.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    placeholder = LengthDistribution(torch.zeros(13), 0.0)  # no mass until loaded
    with pytest.raises(ValueError, match="no mass"):
        placeholder.sample(1)
    placeholder.load_state_dict(state)
    assert torch.equal(placeholder.log_probs, p.log_probs)


def test_length_distribution_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1..4"):
        LengthDistribution.from_lengths([1, 5], max_length=4)
    with pytest.raises(ValueError, match="smoothing"):
        LengthDistribution(torch.ones(4), -1.0)
    with pytest.raises(ValueError, match="non-negative"):
        LengthDistribution(torch.tensor([0.0, -1.0, 2.0]), 1.0)


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------


def _lengths(n: int = 203, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(1, 300, n).tolist()


def _flat(batches: list[list[int]]) -> list[int]:
    return sorted(i for b in batches for i in b)


def test_bucket_sampler_epoch_covers_once_and_buckets() -> None:
    lens = _lengths()
    s = BucketBatchSampler(lens, batch_size=15, seed=3, bucket_size_multiplier=4)
    batches = list(s)
    assert len(batches) == len(s) == math.ceil(len(lens) / 15)
    assert _flat(batches) == list(range(len(lens)))
    # Similar lengths together: within-batch spread far below a random batch's.
    spread = np.mean([np.ptp([lens[i] for i in b]) for b in batches])
    shuffled = np.random.default_rng(0).permutation(len(lens)).reshape(-1, 7)
    assert spread < 0.4 * np.mean([np.ptp(np.take(lens, b)) for b in shuffled.tolist()])
    assert list(s) == batches  # same epoch, same order
    s.set_epoch(1)
    assert list(s) != batches and _flat(list(s)) == list(range(len(lens)))
    other = BucketBatchSampler(lens, batch_size=15, seed=4, bucket_size_multiplier=4)
    assert list(other) != batches


def test_bucket_sampler_max_tokens() -> None:
    lens = _lengths() + [500]  # one sequence over the budget
    s = BucketBatchSampler(lens, max_tokens=600, seed=0)
    batches = list(s)
    assert _flat(batches) == list(range(len(lens)))
    for b in batches:
        cost = len(b) * max(lens[i] for i in b)
        assert cost <= 600 or len(b) == 1
    assert len(s) == len(batches)


def test_bucket_sampler_eval_order_and_drop_last() -> None:
    lens = _lengths(31)
    s = BucketBatchSampler(lens, batch_size=4, shuffle=False)
    batches = list(s)
    flat = [i for b in batches for i in b]
    assert [lens[i] for i in flat] == sorted(lens)
    assert len(batches[-1]) == 3
    dropped = BucketBatchSampler(lens, batch_size=4, shuffle=False, drop_last=True)
    assert len(dropped) == 7 and all(len(b) == 4 for b in dropped)
    train_dropped = BucketBatchSampler(lens, batch_size=4, drop_last=True, seed=2)
    assert len(list(train_dropped)) == 7 and all(len(b) == 4 for b in train_dropped)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_bucket_sampler_distributed(world: int) -> None:
    lens = _lengths(53)
    # Evaluation: union over ranks is every sequence exactly once.
    ranks = [
        list(BucketBatchSampler(lens, batch_size=4, shuffle=False, num_replicas=world, rank=r))
        for r in range(world)
    ]
    everything = [i for batches in ranks for b in batches for i in b]
    assert sorted(everything) == list(range(53))
    # Training: same number of batches on every rank, all sequences seen, disjoint positions.
    train = [
        BucketBatchSampler(lens, batch_size=4, seed=7, num_replicas=world, rank=r)
        for r in range(world)
    ]
    counts = {len(list(s)) for s in train}
    assert len(counts) == 1 and counts == {len(train[0])}
    assert set(i for s in train for b in s for i in b) == set(range(53))
    common = list(BucketBatchSampler(lens, batch_size=4, seed=7))
    padded = -(-len(common) // world) * world
    assert sum(len(s) for s in train) == padded  # padding repeats at most world - 1 batches
    assert [b for s in train for b in s][: len(common)] != common  # interleaved, not copied


def test_bucket_sampler_state_dict_resumes_order() -> None:
    lens = _lengths()
    s = BucketBatchSampler(lens, batch_size=8, seed=5)
    s.set_epoch(4)
    state = s.state_dict()
    assert state == {"epoch": 4, "seed": 5}
    resumed = BucketBatchSampler(lens, batch_size=8, seed=0)
    resumed.load_state_dict(state)
    assert list(resumed) == list(s)


def test_collate_text_and_music() -> None:
    items = [(4, torch.tensor([5, 6, 7])), (9, torch.tensor([8]))]
    batch = collate_text(items)
    assert batch["x"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["lengths"].tolist() == [3, 1] and batch["index"].tolist() == [4, 9]
    assert batch["mask"].tolist() == [[True, True, True], [True, False, False]]
    rolls = [(0, torch.ones(2, 88)), (1, torch.ones(4, 88))]
    batch = collate_music(rolls)
    assert batch["x"].shape == (2, 4, 88) and batch["x"].dtype == torch.float32
    assert batch["x"][0, 2:].sum() == 0 and batch["x"][1].sum() == 4 * 88
    assert batch["mask"].sum().item() == 6 and batch["mask"].dtype == torch.bool


# ---------------------------------------------------------------------------------------------
# PTB
# ---------------------------------------------------------------------------------------------


def _decode_loader(dm: PTBCharDataModule, loader, split: str) -> dict[int, str]:
    dataset = {"train": dm.train_dataset, "valid": dm.val_dataset, "test": dm.test_dataset}[split]
    texts = {}
    for batch in loader:
        for row, length, index in zip(batch["x"], batch["lengths"], batch["index"], strict=True):
            assert row[length:].eq(0).all() and batch["mask"][0].sum() > 0
            texts[int(dataset.line_numbers[index])] = dm.vocab.to_text(row[:length])
    return texts


def test_ptb_datamodule_round_trip(ptb_root, caplog) -> None:
    root, lines = ptb_root
    dm = PTBCharDataModule(
        root=str(root), batch_size=4, max_length=20, download=False, verify=False
    )
    with caplog.at_level(logging.INFO, logger="latentflow.data"):
        dm.prepare_data()
        dm.setup()
    assert dm.kind == "text" and dm.num_features == len(dm.vocab) == 2 + len(LETTERS) + 1
    assert dm.vocab.symbols == ["<pad>", "<unk>", "_", *LETTERS]
    # The 20-token train sentence is dropped (T < max_length), the 19-token one kept.
    assert dm.dropped == {"train": 1, "valid": 1, "test": 0}
    assert len(dm.train_dataset) == 41 and max(dm.train_dataset.lengths) == 19
    assert any("dropped 1 of 42" in r.getMessage() for r in caplog.records)
    # Out-of-vocabulary test characters: <unk>, one warning with the count.
    oov = [r for r in caplog.records if "<unk>" in r.getMessage()]
    assert len(oov) == 1 and ": 2 characters" in oov[0].getMessage()
    assert oov[0].levelno == logging.WARNING
    assert dm.max_length == dm.length_distribution.max_length == 19
    assert math.isfinite(dm.length_distribution.log_prob(torch.tensor([19])).item())
    for split, loader in [
        ("train", dm.train_dataloader()),
        ("valid", dm.val_dataloader()),
        ("test", dm.test_dataloader()),
    ]:
        texts = _decode_loader(dm, loader, split)
        dataset = {"train": dm.train_dataset, "valid": dm.val_dataset, "test": dm.test_dataset}
        assert len(texts) == len(dataset[split])
        for number, text in texts.items():
            original = lines[split][number].strip()
            assert text == original.replace("Q", "<unk>").replace("Z", "<unk>")


def test_ptb_length_rules_and_eval_long(ptb_root) -> None:
    root, _ = ptb_root
    reference = PTBCharDataModule(root=str(root), max_length=21, download=False, verify=False)
    reference.setup()
    assert reference.dropped == {"train": 0, "valid": 1, "test": 0}
    keep = PTBCharDataModule(
        root=str(root), max_length=20, eval_long="keep", download=False, verify=False
    )
    keep.setup()
    assert keep.dropped == {"train": 1, "valid": 0, "test": 0}
    assert len(keep.val_dataset) == 13 and keep.max_length == 25  # support grows to valid's
    assert math.isfinite(keep.length_distribution.log_prob(torch.tensor([25])).item())
    limited = PTBCharDataModule(root=str(root), limit_sequences=5, download=False, verify=False)
    limited.setup()
    assert [len(d) for d in (limited.train_dataset, limited.val_dataset)] == [5, 5]
    assert len(limited.vocab) == len(reference.vocab)
    info = limited.describe()
    assert info["train/sequences"] == 5 and info["train/lines"] == 42


def test_ptb_dataloader_epochs_workers_and_state(ptb_root) -> None:
    root, _ = ptb_root
    dm = PTBCharDataModule(root=str(root), batch_size=3, seed=11, download=False, verify=False)
    dm.setup()
    first = [b["index"].tolist() for b in dm.train_dataloader()]
    dm.trainer = SimpleNamespace(current_epoch=1, world_size=1, global_rank=0)
    second = [b["index"].tolist() for b in dm.train_dataloader()]
    assert first != second and _flat(first) == _flat(second)
    state = dm.state_dict()
    assert state == {"train_sampler": {"epoch": 1, "seed": 11}}
    resumed = PTBCharDataModule(root=str(root), batch_size=3, download=False, verify=False)
    resumed.setup()
    resumed.load_state_dict(state)
    assert [b["index"].tolist() for b in resumed.train_dataloader()] == second
    workers = PTBCharDataModule(
        root=str(root), batch_size=3, seed=11, num_workers=1, download=False, verify=False
    )
    workers.setup()
    dm.trainer = None
    dm._epoch = 0
    with_workers = [b["index"].tolist() for b in workers.train_dataloader()]
    assert with_workers == [b["index"].tolist() for b in dm.train_dataloader()] == first


def test_lightning_trainer_sets_epochs_and_saves_order(ptb_root, tmp_path) -> None:
    import pytorch_lightning as pl

    class Recorder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[list[list[int]]] = []
            self.val_seen: list[int] = []

        def on_train_epoch_start(self) -> None:
            self.seen.append([])

        def training_step(self, batch, batch_idx):
            self.seen[-1].append(batch["index"].tolist())
            return (self.weight * batch["lengths"].float().mean()).sum()

        def validation_step(self, batch, batch_idx):
            self.val_seen.extend(batch["index"].tolist())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    root, _ = ptb_root
    dm = PTBCharDataModule(root=str(root), batch_size=4, seed=2, download=False, verify=False)
    model = Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    expected = []
    for epoch in range(2):
        sampler = BucketBatchSampler(dm.train_dataset.lengths, batch_size=4, seed=2)
        sampler.set_epoch(epoch)
        expected.append(list(sampler))
    assert model.seen == expected and expected[0] != expected[1]
    assert sorted(model.val_seen) == sorted(2 * list(range(len(dm.val_dataset))))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = load_checkpoint_file(tmp_path / "last.ckpt")
    assert checkpoint["PTBCharDataModule"] == {"train_sampler": {"epoch": 1, "seed": 2}}
    assert checkpoint["datamodule_hyper_parameters"]["max_length"] == 288


def test_datamodule_shards_over_trainer_ranks(ptb_root) -> None:
    root, _ = ptb_root
    seen = []
    for rank in range(2):
        dm = PTBCharDataModule(root=str(root), batch_size=2, download=False, verify=False)
        dm.setup()
        dm.trainer = SimpleNamespace(current_epoch=0, world_size=2, global_rank=rank)
        seen.append([i for b in dm.test_dataloader() for i in b["index"].tolist()])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(13))


def test_ptb_max_tokens_batches(ptb_root) -> None:
    root, _ = ptb_root
    dm = PTBCharDataModule(
        root=str(root), batch_size=None, max_tokens=40, download=False, verify=False
    )
    dm.setup()
    for batch in dm.train_dataloader():
        assert batch["x"].numel() <= 40 or len(batch["x"]) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eval_long": "x"}, "data.eval_long must be 'drop' or 'keep', got 'x'"),
        ({"batch_size": 15, "max_tokens": 100}, "exactly one of data.batch_size"),
        ({"batch_size": None}, "exactly one of data.batch_size"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"max_length": 1}, "data.max_length"),
        ({"length_smoothing": -0.5}, "data.length_smoothing"),
        ({"limit_sequences": 0}, "data.limit_sequences"),
    ],
)
def test_ptb_datamodule_validates_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        PTBCharDataModule(**kwargs)


@pytest.mark.parametrize("config", ["ptb", "jsb", "nottingham", "piano_midi", "muse_data"])
def test_hydra_data_configs_instantiate(config, monkeypatch, tmp_path) -> None:
    from hydra.utils import instantiate

    from .helpers import compose_config

    monkeypatch.setenv("LATENTFLOW_DATA", str(tmp_path))
    cfg = compose_config("train", [f"data={config}", "seed=3"], tmp_path)
    dm = instantiate(cfg.data)
    assert dm.root == tmp_path and dm.seed == 3 and dm.download
    expected = PTBCharDataModule if config == "ptb" else PolyphonicDataModule
    assert type(dm) is expected
    if config != "ptb":
        assert dm.name == {"jsb": "jsb_chorales"}.get(config, config)


def test_polyphonic_validates_name() -> None:
    with pytest.raises(ValueError, match="data.name must be one of"):
        PolyphonicDataModule("bach")


def test_root_resolution(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LATENTFLOW_DATA", str(tmp_path))
    assert PTBCharDataModule().root == tmp_path
    assert PTBCharDataModule(root="elsewhere").root == Path("elsewhere")
    monkeypatch.delenv("LATENTFLOW_DATA")
    assert PTBCharDataModule().root == Path("data")


def test_ptb_missing_empty_truncated(tmp_path, ptb_root) -> None:
    empty_root = tmp_path / "nothing"
    dm = PTBCharDataModule(root=str(empty_root), download=False, verify=False)
    with pytest.raises(DataError, match="ptb.char.train.txt.*LATENTFLOW_DATA"):
        dm.prepare_data()
    with pytest.raises(DataError, match="ptb.char.valid.txt"):
        dm.setup()
    root, _ = ptb_root
    path = root / ptb.char_file("valid")
    path.write_text("")
    with pytest.raises(DataError, match=r"ptb\.char\.valid\.txt: the file is empty"):
        PTBCharDataModule(root=str(root)).setup()
    path.write_text("a _ b \n c _ d")  # cut in the middle of a line
    with pytest.raises(DataError, match=r"ptb\.char\.valid\.txt: truncated"):
        PTBCharDataModule(root=str(root)).setup()
    path.write_bytes(b"a \xff \n ")
    with pytest.raises(DataError, match="not UTF-8"):
        PTBCharDataModule(root=str(root)).setup()


def test_chars_from_words_rule() -> None:
    words = " the <unk> cat \n a N \n"
    expected = "t h e _ < u n k > _ c a t \n a _ N \n "
    assert ptb.chars_from_words(words) == expected
    assert [line.split() for line in expected.split("\n")[:-1]][1] == ["a", "_", "N"]


# ---------------------------------------------------------------------------------------------
# Music
# ---------------------------------------------------------------------------------------------


def test_music_datamodule_round_trip(music_root) -> None:
    root, arrays = music_root
    dm = PolyphonicDataModule(
        "jsb_chorales", root=str(root), batch_size=2, download=False, verify=False
    )
    dm.prepare_data()
    dm.setup()
    assert dm.kind == "music" and dm.vocab is None and dm.num_features == 88
    seen = np.concatenate([dm.train_dataset.lengths, dm.val_dataset.lengths])
    assert dm.max_length == math.ceil(1.25 * seen.max()) == dm.length_distribution.max_length
    for split, loader in [("train", dm.train_dataloader()), ("test", dm.test_dataloader())]:
        count = 0
        for batch in loader:
            assert batch["x"].shape[:2] == batch["mask"].shape
            for roll, length, index in zip(
                batch["x"], batch["lengths"], batch["index"], strict=True
            ):
                assert roll[length:].sum() == 0
                assert music.roll_to_steps(roll[:length]) == steps_of(arrays, split, int(index))
                count += 1
        assert count == len(arrays[f"{split}_seq_offsets"]) - 1
    info = dm.describe()
    assert info["train/tokens"] == int(arrays["train_seq_offsets"][-1])


def test_music_bad_files(tmp_path) -> None:
    (tmp_path / "music").mkdir()
    path = tmp_path / "music" / "nottingham.npz"
    arrays = music_arrays()
    arrays["valid_notes"] = arrays["valid_notes"].copy()
    arrays["valid_notes"][0] = 109
    music.write_npz(path, arrays)
    with pytest.raises(DataError, match=r"nottingham\.npz: note 109 outside .*21\.\.108.*valid"):
        PolyphonicDataModule("nottingham", root=str(tmp_path)).setup()
    music.write_npz(path, music_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"nottingham\.npz: cannot read the \.npz.*truncated"):
        PolyphonicDataModule("nottingham", root=str(tmp_path)).setup()
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"nottingham\.npz: the file is empty"):
        PolyphonicDataModule("nottingham", root=str(tmp_path)).setup()
    incomplete = {k: v for k, v in music_arrays().items() if not k.startswith("test")}
    music.write_npz(path, incomplete)
    with pytest.raises(DataError, match="missing arrays"):
        PolyphonicDataModule("nottingham", root=str(tmp_path)).setup()
    pickled = {**music_arrays(), "train_notes": np.array([object()], dtype=object)}
    np.savez(path, **pickled)
    with pytest.raises(DataError, match="cannot read the .npz"):
        PolyphonicDataModule("nottingham", root=str(tmp_path)).setup()
    with pytest.raises(DataError, match=r"piano_midi\.npz.*LATENTFLOW_DATA"):
        PolyphonicDataModule(
            "piano_midi", root=str(tmp_path), download=False, verify=False
        ).prepare_data()


def test_mat_conversion(tmp_path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    arrays = music_arrays(seed=2)
    cells = {}
    for split in music.SPLITS:
        rolls = np.empty((1, len(arrays[f"{split}_seq_offsets"]) - 1), dtype=object)
        for i in range(rolls.shape[1]):
            roll = np.zeros((len(steps_of(arrays, split, i)), 88), dtype=np.uint8)
            for t, chord in enumerate(steps_of(arrays, split, i)):
                roll[t, np.asarray(chord, dtype=int) - 21] = 1
            rolls[0, i] = roll
        cells[f"{split}data"] = rolls
    mat = tmp_path / "x.mat"
    scipy_io.savemat(mat, cells)
    converted = music.arrays_from_mat(mat)
    assert converted.keys() == arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(converted[key], arrays[key])
    bad = {k: v for k, v in cells.items()}
    bad["testdata"] = np.empty((1, 1), dtype=object)
    bad["testdata"][0, 0] = np.zeros((3, 80), dtype=np.uint8)
    scipy_io.savemat(mat, bad)
    with pytest.raises(DataError, match=r"x\.mat: testdata sequence 0 must be a T x 88"):
        music.arrays_from_mat(mat)


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 (ephemeral port) serving tmp_path/mirror."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".part")]


def test_fetch_verifies_and_renames(mirror, tmp_path) -> None:
    served, url = mirror
    (served / "f.txt").write_bytes(b"hello\n")
    dest = tmp_path / "root" / "sub" / "f.txt"
    download.fetch(f"{url}/f.txt", dest, _sha(b"hello\n"))
    assert dest.read_bytes() == b"hello\n" and not _leftovers(dest.parent)


def test_fetch_rejects_corrupt_file(mirror, tmp_path) -> None:
    served, url = mirror
    (served / "f.txt").write_bytes(b"corrupted\n")
    dest = tmp_path / "root" / "f.txt"
    expected = _sha(b"hello\n")
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download.fetch(f"{url}/f.txt", dest, expected)
    message = str(info.value)
    assert "f.txt" in message and expected in message and _sha(b"corrupted\n") in message
    assert not dest.exists() and not _leftovers(dest.parent)


def test_ptb_download_and_rebuild(mirror, tmp_path, monkeypatch) -> None:
    served, url = mirror
    lines = make_ptb(served)  # char valid/test served as they are
    word_train = _word_text(lines["train"]).encode()
    (served / ptb.char_file("train")).unlink()  # train comes from the word file
    (served / ptb.WORD_TRAIN).write_bytes(word_train)
    sums = {
        rel: _sha((served / rel).read_bytes())
        for rel in (*map(ptb.char_file, ("valid", "test")), ptb.WORD_TRAIN)
    }
    sums[ptb.char_file("train")] = _sha(ptb.chars_from_words(word_train.decode()).encode())
    for rel, digest in sums.items():
        monkeypatch.setitem(download.KNOWN_SHA256, rel, digest)
    root = tmp_path / "root"
    dm = PTBCharDataModule(root=str(root), base_url=url + "/", max_length=20)
    dm.prepare_data()
    dm.setup()
    assert dm.dropped["train"] == 1 and len(dm.vocab) == 11
    assert {p.name for p in (root / "ptb").iterdir()} == {
        "ptb.train.txt",
        "ptb.char.train.txt",
        "ptb.char.valid.txt",
        "ptb.char.test.txt",
    }
    # A corrupt mirror: the file is rejected and nothing is left in its place.
    root2 = tmp_path / "root2"
    monkeypatch.setitem(download.KNOWN_SHA256, ptb.char_file("test"), "0" * 64)
    with pytest.raises(DataError, match=r"ptb\.char\.test\.txt.*expected sha256 0{64}, got"):
        PTBCharDataModule(root=str(root2), base_url=url).prepare_data()
    assert not (root2 / ptb.char_file("test")).exists() and not _leftovers(root2)
    # A file the mirror lacks: one clear error naming it and LATENTFLOW_DATA.
    (served / ptb.char_file("valid")).unlink()
    root3 = tmp_path / "root3"
    with pytest.raises(DataError, match=r"ptb\.char\.valid\.txt.*404.*LATENTFLOW_DATA"):
        PTBCharDataModule(root=str(root3), base_url=url).prepare_data()
    assert not _leftovers(root3)


def test_music_download_and_convert(mirror, tmp_path, monkeypatch) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    served, url = mirror
    arrays = music_arrays(seed=5)
    cells = {}
    for split in music.SPLITS:
        count = len(arrays[f"{split}_seq_offsets"]) - 1
        rolls = np.empty((1, count), dtype=object)
        for i in range(count):
            steps = steps_of(arrays, split, i)
            roll = np.zeros((len(steps), 88), dtype=np.uint8)
            for t, chord in enumerate(steps):
                roll[t, np.asarray(chord, dtype=int) - 21] = 1
            rolls[0, i] = roll
        cells[f"{split}data"] = rolls
    mat_rel = music.mat_file("piano_midi")
    (served / mat_rel).parent.mkdir(parents=True)
    scipy_io.savemat(served / mat_rel, cells)
    expected_npz = tmp_path / "expected.npz"
    music.write_npz(expected_npz, arrays)
    monkeypatch.setitem(download.KNOWN_SHA256, mat_rel, _sha((served / mat_rel).read_bytes()))
    npz_sha = _sha(expected_npz.read_bytes())
    monkeypatch.setitem(download.KNOWN_SHA256, music.npz_file("piano_midi"), npz_sha)
    root = tmp_path / "root"
    dm = PolyphonicDataModule("piano_midi", root=str(root), base_url=url)
    dm.prepare_data()
    dm.setup()
    assert (root / music.npz_file("piano_midi")).read_bytes() == expected_npz.read_bytes()
    assert len(dm.train_dataset) == 6 and not _leftovers(root)
    # A wrong conversion checksum leaves no .npz behind.
    (root / music.npz_file("piano_midi")).unlink()
    monkeypatch.setitem(download.KNOWN_SHA256, music.npz_file("piano_midi"), "f" * 64)
    with pytest.raises(DataError, match=r"piano_midi\.npz.*converted from"):
        dm.prepare_data()
    assert not (root / music.npz_file("piano_midi")).exists() and not _leftovers(root)
