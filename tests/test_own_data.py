"""Your own data: any text corpus (data=text_file) and any folder of MIDI files
(data=midi_folder), with every model, resume, DDP, latentflow-eval and latentflow-sample; bad
input refused in one line or counted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from latentflow.data import midi_folder, music
from latentflow.data.download import DataError
from latentflow.data.midi_folder import MidiFolderDataModule, convert_folder
from latentflow.data.text_file import TextFileDataModule
from latentflow.lightning.checkpoint_io import load_checkpoint_file
from latentflow.run import evaluate, sample, train

from .helpers import TINY, compose_config
from .scale_helpers import SignalAtStep, same_tensors

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"]


def corpus(tmp_path: Path, lines: int = 200, seed: int = 0, name: str = "corpus.txt") -> Path:
    rng = np.random.default_rng(seed)
    text = "\n".join(" ".join(rng.choice(WORDS, rng.integers(2, 7))) for _ in range(lines))
    path = tmp_path / name
    path.write_text(text + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- text files
def test_one_file_split_by_line_with_a_known_vocabulary(tmp_path):
    path = corpus(tmp_path)
    dm = TextFileDataModule(path=str(path), split=[0.8, 0.1, 0.1], seed=3)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (160, 20, 20)
    chars = sorted(set("".join(WORDS)) | {" "})
    assert dm.vocab.symbols == ["<pad>", "<unk>", *chars] and dm.num_features == len(chars) + 2
    lines = path.read_text().splitlines()
    # every sequence is one line of the file, spelled back exactly
    for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        for i in range(len(dataset)):
            assert "".join(dm.vocab.decode(dataset[i][1])) in lines
    again = TextFileDataModule(path=str(path), split=[0.8, 0.1, 0.1], seed=3)
    again.setup()
    assert torch.equal(again.val_dataset.ids, dm.val_dataset.ids)  # the split is seeded
    other = TextFileDataModule(path=str(path), split=[0.8, 0.1, 0.1], seed=4)
    other.setup()
    assert not torch.equal(other.val_dataset.ids, dm.val_dataset.ids)
    assert dm.length_distribution.max_length == max(len(s) for s in lines)


def test_words_with_a_vocabulary_size_and_three_files(tmp_path):
    files = [corpus(tmp_path, 300, s, f"{n}.txt") for s, n in enumerate(("tr", "va", "te"))]
    (tmp_path / "va.txt").write_text("the zebra sat\n")  # an unseen word
    dm = TextFileDataModule(
        train=str(files[0]),
        valid=str(files[1]),
        test=str(files[2]),
        tokenizer="word",
        vocab_size=3,
    )
    dm.setup()
    counts = {w: (tmp_path / "tr.txt").read_text().split().count(w) for w in WORDS}
    top = sorted(sorted(counts, key=lambda w: (-counts[w], w))[:3])
    assert dm.vocab.symbols == ["<pad>", "<unk>", *top]
    assert [dm.vocab.symbols[i] for i in dm.val_dataset[0][1]] == [
        w if w in top else "<unk>" for w in ["the", "zebra", "sat"]
    ]


def test_paragraphs_and_a_length_filter(tmp_path, caplog):
    path = tmp_path / "p.txt"
    path.write_text("ab\ncd\n\n\nef\n\nghij klmn opqr\n\nst\n\nuv\n\nwx\n\nyz\n")
    dm = TextFileDataModule(
        path=str(path), unit="paragraph", split=[0.5, 0.25, 0.25], max_length=6
    )
    dm.setup()
    kept = [dm.train_dataset, dm.val_dataset, dm.test_dataset]
    assert sum(len(d) for d in kept) == 6  # 7 paragraphs, the 14-character one dropped
    assert "dropped" in caplog.text
    from latentflow.data.text_file import tokenize, units_of

    units = units_of(path.read_text(), "paragraph")
    assert units[:2] == ["ab\ncd", "ef"] and len(units) == 7
    assert tokenize("ab\ncd", "char") == ["a", "b", "\n", "c", "d"]  # the break is a token
    assert tokenize("to be\nor not", "word") == ["to", "be", "\n", "or", "not"]


@pytest.mark.parametrize(
    "make,kwargs,message",
    [
        (
            lambda p: p.write_bytes(b"good line\nbad \xff line\n"),
            {},
            r"x\.txt, line 2, column 5: byte 0xff is not utf-8",
        ),
        (lambda p: p.write_text("\n\n  \n"), {}, "the file is empty"),
        (
            lambda p: p.write_text("a\nb\nc\n"),
            {"split": [1.0, 0.0, 0.0]},
            "leaves the valid split empty",
        ),
        (lambda p: p.write_text("a\nb\n"), {"split": [0.5, 0.5]}, "three ratios"),
        (
            lambda p: p.write_text("<unk> <unk>\n" * 20),
            {"tokenizer": "word"},
            "every training token is <unk>",
        ),
        (lambda p: p.write_text("abc\n" * 9), {"unit": "sentence"}, "data.unit"),
    ],
)
def test_bad_text_input_is_one_line(make, kwargs, message, tmp_path):
    path = tmp_path / "x.txt"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        TextFileDataModule(path=str(path), **kwargs).setup()
    assert "\n" not in str(info.value)


def test_latin1_text_with_the_right_encoding(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 20)
    dm = TextFileDataModule(path=str(path), encoding="latin-1")
    dm.setup()
    assert "é" in dm.vocab.symbols


@pytest.mark.parametrize("model", ["flow", "lstm"])
def test_a_text_corpus_trains_evaluates_and_samples(model, tmp_path):
    path = corpus(tmp_path)
    cfg = compose_config(
        "train",
        [*TINY, "data=text_file", f"data.path={path}", "data.tokenizer=word", f"model={model}"],
        tmp_path / "run",
    )
    _, metrics = train(cfg)
    assert metrics["test"]["nll"] > 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    again = evaluate(
        compose_config("eval", [f"ckpt_path={ckpt}", "splits=[test]"], tmp_path / "e")
    )
    assert again["test"]["num_sequences"] == metrics["test"]["num_sequences"]
    out = sample(compose_config("sample", [f"ckpt_path={ckpt}", "num_samples=5"], tmp_path / "s"))
    lines = (tmp_path / "s" / "samples.txt").read_text().splitlines()
    assert len(lines) == 5 and lines == out["samples"]
    for line, T in zip(lines, out["lengths"], strict=True):  # words, in the corpus's spelling
        assert len(line.split()) == T and set(line.split()) <= set(WORDS) | {"<unk>"}


# ---------------------------------------------------------------------------- MIDI folders
def write_midi(path: Path, notes: list[tuple[int, int, int]], tpb: int = 96, tempo_changes=False,
               drums: list[tuple[int, int, int]] = (), channel: int = 0) -> None:  # fmt: skip
    """A type-1 MIDI file with ``notes`` (pitch, start beat, end beat); optional tempo and
    time-signature changes (which must move no step), and percussion on channel 10."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    if tempo_changes:
        meta.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=tpb))
        meta.append(mido.MetaMessage("set_tempo", tempo=300000, time=tpb))
    mid.tracks.append(meta)
    for events, ch in ((notes, channel), (list(drums), 9)):
        if not events:
            continue
        track = mido.MidiTrack()
        timeline = []
        for pitch, start, end in events:
            timeline.append((start * tpb, 1, pitch))
            timeline.append((end * tpb, 0, pitch))
        now = 0
        for tick, on, pitch in sorted(timeline, key=lambda e: (e[0], e[1])):
            kind = "note_on" if on else "note_off"
            track.append(
                mido.Message(
                    kind, note=pitch, velocity=64 if on else 0, time=tick - now, channel=ch
                )
            )
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))


def expected_roll(notes, beats: int, step_beats: float) -> np.ndarray:
    roll = np.zeros((int(beats / step_beats), 88), dtype=bool)
    for pitch, start, end in notes:
        if 21 <= pitch <= 108:
            roll[int(start / step_beats) : int(end / step_beats), pitch - 21] = True
    return roll


def make_folder(tmp_path: Path, n: int = 10) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    folder = tmp_path / "midi"
    (folder / "sub").mkdir(parents=True)
    expected = {}
    for i in range(n):
        pitches = rng.choice(np.arange(40, 80), 7, replace=False)  # no pitch twice at once
        starts = rng.integers(0, 10, 6)
        notes = [
            (int(p), int(s), int(s) + int(rng.integers(1, 3)))
            for p, s in zip(pitches, starts, strict=False)
        ]
        notes.append((int(pitches[6]), 0, 12))  # the piece lasts 12 beats
        name = f"sub/piece{i}.MIDI" if i % 3 == 0 else f"piece{i}.mid"
        write_midi(folder / name, notes, tempo_changes=i % 2 == 0, drums=[(36, 0, 1), (42, 2, 3)])
        expected[name] = expected_roll(notes, 12, 0.5)
    (folder / "broken.mid").write_bytes(b"MThd this is not a MIDI file")
    (folder / "notes.txt").write_text("not a MIDI file either")
    return folder, expected


def test_a_midi_folder_reads_back_exactly_the_notes_written(tmp_path, caplog):
    folder, expected = make_folder(tmp_path)
    arrays, report = convert_folder(folder, 0.5, (0.6, 0.2, 0.2), seed=0)
    assert report["used"] == 10 and list(report["skipped"]) == ["broken.mid"]
    assert "skipped 1 of 11 MIDI files: broken.mid" in caplog.text
    path = tmp_path / "out.npz"
    midi_folder.write_cache(path, arrays)
    splits = music.read_npz(path)
    seen = []
    for name in music.SPLITS:
        files = arrays[f"{name}_files"].tolist()
        assert len(files) == {"train": 6, "valid": 2, "test": 2}[name]
        for i, f in enumerate(files):
            roll = splits[name].roll(i).numpy().astype(bool)
            assert (roll == expected[f]).all(), f  # drums skipped, tempo changes ignored
            seen.append(f)
    assert sorted(seen) == sorted(expected)


def test_notes_outside_the_piano_are_dropped_and_counted(tmp_path, caplog):
    folder = tmp_path / "m"
    folder.mkdir()
    for i in range(3):
        write_midi(folder / f"{i}.mid", [(60, 0, 2), (12, 0, 2), (120, 1, 2)])
    _, report = convert_folder(folder, 1.0, (0.34, 0.33, 0.33))
    assert report["outside"] == 6 and "dropped 6 notes outside the 88 piano keys" in caplog.text


def test_the_cache_is_used_rebuilt_on_change_and_never_read_half_written(tmp_path, monkeypatch):
    folder, _ = make_folder(tmp_path, n=6)
    kw = dict(path=str(folder), split=[0.5, 0.25, 0.25], cache=str(tmp_path / "cache"))
    dm = MidiFolderDataModule(**kw)
    dm.prepare_data()
    first = dm.cache_file()
    assert first.is_file()
    calls = []
    real = midi_folder.convert_folder
    monkeypatch.setattr(
        midi_folder, "convert_folder", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    MidiFolderDataModule(**kw).prepare_data()
    assert not calls, "an unchanged folder reuses its cache"
    first.write_bytes(first.read_bytes()[:200])  # a cache cut short: rebuilt, not used
    MidiFolderDataModule(**kw).prepare_data()
    assert calls == [1] and music.read_npz(first)
    write_midi(folder / "new.mid", [(60, 0, 4)])  # a changed folder: a new cache
    changed = MidiFolderDataModule(**kw)
    assert changed.cache_file() != first
    other = MidiFolderDataModule(**{**kw, "step_beats": 1.0})  # other settings: another cache
    assert other.cache_file() not in (first, changed.cache_file())
    assert not list((tmp_path / "cache").glob(".*.part"))


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda d: None, "no .mid or .midi file"),
        (lambda d: (d / "a.mid").write_bytes(b"junk"), "none of the 1 MIDI files"),
    ],
)
def test_folders_without_usable_midi_are_one_line(setup, message, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    setup(folder)
    with pytest.raises(DataError, match=message):
        MidiFolderDataModule(path=str(folder), cache=str(tmp_path / "c")).prepare_data()


def test_transposition_is_per_epoch_seeded_and_stays_on_the_keys(tmp_path):
    folder, _ = make_folder(tmp_path, n=6)
    dm = MidiFolderDataModule(path=str(folder), split=[0.5, 0.25, 0.25], transpose=[-5, 6],
                              cache=str(tmp_path / "c"))  # fmt: skip
    dm.setup()
    loader = dm.train_dataloader()
    base = dm.train_dataset.base
    shifts = set()
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        for i in range(len(base)):
            k = dm.train_dataset.shift(i)
            assert -5 <= k <= 6
            shifts.add(k)
            _, rolled = dm.train_dataset[i]
            original = base.roll(i)
            assert torch.equal(
                rolled.sum(1) <= original.sum(1), torch.ones(len(original), dtype=torch.bool)
            )
            if k > 0:
                assert torch.equal(rolled[:, k:], original[:, :-k])
    assert len(shifts) > 2
    loader.batch_sampler.set_epoch(1)
    first = [dm.train_dataset.shift(i) for i in range(len(base))]
    assert first == [dm.train_dataset.shift(i) for i in range(len(base))]  # a resume: the same


@pytest.mark.slow
def test_a_midi_folder_trains_resumes_exactly_evaluates_and_samples(tmp_path):
    folder, _ = make_folder(tmp_path, n=12)
    common = [*TINY, "data=midi_folder", f"data.path={folder}", "data.transpose=[-2,2]",
              f"data.cache={tmp_path / 'cache'}", "data.split=[0.5,0.25,0.25]",
              "data.batch_size=2", "trainer.max_epochs=2", "test=false"]  # fmt: skip
    _, reference = train(compose_config("train", common, tmp_path / "ref"))
    run = tmp_path / "run"
    cfg = compose_config("train", common, run)
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    with pytest.raises(SIGTERMException):
        train(cfg, extra_callbacks=[SignalAtStep(4, "SIGTERM")])  # mid-epoch 1
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _, resumed = train(compose_config("train", [*common, "ckpt_path=auto"], run))
    assert resumed["val"] == reference["val"]
    ref = load_checkpoint_file(tmp_path / "ref" / "checkpoints" / "last.ckpt")
    last = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert not same_tensors(last["state_dict"], ref["state_dict"])
    ckpt = run / "checkpoints" / "last.ckpt"
    evaluate(compose_config("eval", [f"ckpt_path={ckpt}", "splits=[val]"], tmp_path / "e"))
    out = sample(compose_config("sample", [f"ckpt_path={ckpt}", "num_samples=2"], tmp_path / "s"))
    assert out["step_beats"] == 0.5 and len(list((tmp_path / "s" / "midi").glob("*.mid"))) == 2


@pytest.mark.slow
def test_own_data_under_ddp(tmp_path, real_data_root):
    from .scale_helpers import REPO, subprocess_env, train_command

    path = corpus(tmp_path)
    args = [*TINY, "data=text_file", f"data.path={path}", "trainer=ddp_cpu", "test=false"]
    args += ["trainer.strategy.start_method=popen", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(train_command(*args), cwd=REPO, env=subprocess_env(real_data_root),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]["nll"] > 0


def test_latentflow_prepare_midi(tmp_path):
    folder, expected = make_folder(tmp_path, n=6)
    out = tmp_path / "prepared.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "latentflow.prepare", "midi", str(folder), str(out)]
        + ["--split", "0.5", "0.25", "0.25"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["train"], summary["valid"], summary["test"], summary["skipped"]) == (
        3,
        2,
        1,
        1,
    )
    dm = MidiFolderDataModule(path=str(out))
    dm.setup()
    assert len(dm.train_dataset) == 3
    nope = str(tmp_path / "nope")
    bad = subprocess.run([sys.executable, "-m", "latentflow.prepare", "midi", nope, str(out)],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("latentflow-prepare: error: data.path:")


# ---------------------------------------------------------------------------- Bach, by music21
@pytest.mark.slow
def test_sixty_bach_chorales_written_by_music21(tmp_path):
    """An external test set: music21's corpus of Bach chorales, written to MIDI by music21 (an
    independent writer), read as a midi_folder. The rolls must look like chorales (4 voices at
    most steps, the voices' range), and a model trained on them samples MIDI that music21
    reads back."""
    music21 = pytest.importorskip("music21")
    folder = tmp_path / "chorales"
    folder.mkdir()
    names = list(music21.corpus.chorales.Iterator(numberingSystem="bwv", returnType="filename"))
    for name in names[:60]:
        music21.corpus.parse(name).write("midi", fp=str(folder / f"{name.replace('/', '_')}.mid"))
    dm = MidiFolderDataModule(path=str(folder), step_beats=0.5, cache=str(tmp_path / "cache"))
    dm.setup()
    rolls = [
        d.roll(i).numpy()
        for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)
        for i in range(len(d))
    ]
    assert len(rolls) == 60
    voices = np.concatenate([r.sum(1) for r in rolls])
    sounding = voices[voices > 0]
    assert (sounding == 4).mean() > 0.75, np.bincount(sounding.astype(int))
    # a few chorales carry an extra instrumental part: more than 4 notes is rare (measured: 8.5%)
    assert (sounding <= 4).mean() > 0.88
    keys = np.flatnonzero(np.concatenate(rolls).any(0)) + 21
    assert 28 <= keys.min() and keys.max() <= 88  # chorale voices: bass E1.. soprano E6

    run = tmp_path / "run"
    cache = f"data.cache={tmp_path / 'cache'}"
    overrides = [*TINY, "data=midi_folder", f"data.path={folder}", cache,
                 "data.limit_sequences=null", "trainer.max_epochs=3", "test=false"]  # fmt: skip
    train(compose_config("train", overrides, run))
    out = sample(
        compose_config(
            "sample",
            [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "num_samples=3"],
            tmp_path / "s",
        )
    )
    for i in range(len(out["lengths"])):
        score = music21.converter.parse(str(tmp_path / "s" / "midi" / f"sample_{i:03d}.mid"))
        assert score.highestTime > 0  # a MIDI file music21 reads
