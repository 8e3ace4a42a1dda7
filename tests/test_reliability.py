"""The hostile inputs and faults that broke main, each refused in one line (exit != 0)
or survived, and nothing in a run directory written before a resume is known to be valid."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from latentflow.config_checks import ConfigError
from latentflow.data import download, music
from latentflow.data.download import DataError
from latentflow.run import sample, train
from latentflow.rundir import RunLock

from .helpers import TINY, compose_config
from .scale_helpers import REPO, subprocess_env, train_command

JSB = ["experiment=jsb/af_af", *TINY, "test=false"]


def tiny_run(root: Path, run: Path, *extra: str) -> tuple[float | None, dict]:
    return train(compose_config("train", [*JSB, f"data.root={root}", *extra], run))


@pytest.fixture
def finished_run(real_data_root, tmp_path):
    run = tmp_path / "run"
    tiny_run(real_data_root, run)
    return run


# ----------------------------------------------------------------- 2: one run per directory
def test_a_run_directory_in_use_is_refused(real_data_root, tmp_path):
    run = tmp_path / "run"
    with RunLock(run):  # another run holds it
        with pytest.raises(ConfigError, match=r"is in use \(pid \d+ on .* since"):
            tiny_run(real_data_root, run)
    assert not (run / "config.yaml").exists()


def test_a_stale_lock_of_a_dead_process_does_not_block(real_data_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("pid 999999 on elsewhere since 2026-01-01 00:00:00\n")
    value, _ = tiny_run(real_data_root, run)
    assert value is not None


def test_two_processes_in_one_directory_cannot_both_run(real_data_root, tmp_path):
    """The reported case, with real processes: the second (another seed, 'auto') is refused."""
    run = tmp_path / "run"
    env = subprocess_env(real_data_root)
    args = [*JSB, f"hydra.run.dir={run}", "ckpt_path=auto", "trainer.max_epochs=40"]
    first = subprocess.Popen(train_command(*args), cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = __import__("time").time() + 120
        while not (run / ".lock").exists() or not (run / ".lock").read_text():
            assert __import__("time").time() < deadline and first.poll() is None
            __import__("time").sleep(0.2)
        second = subprocess.run(
            train_command(*args, "seed=1"), cwd=REPO, env=env, capture_output=True, text=True
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith("latentflow-train: error: run")
        assert "in use" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


def test_resuming_with_another_seed_or_model_is_refused(finished_run, real_data_root):
    before = (finished_run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1"):
        tiny_run(real_data_root, finished_run, "ckpt_path=auto", "seed=1")
    # 4: a failed resume names the differing keys and rewrites nothing in the run directory
    with pytest.raises(ConfigError, match=r"prior\.latent_dim: 4 -> 8"):
        tiny_run(real_data_root, finished_run, "ckpt_path=auto", "prior.latent_dim=8")
    assert (finished_run / "config.yaml").read_text() == before


# ----------------------------------------------------------------- 3: runs that learn nothing
def test_a_model_that_is_nan_at_every_validation_writes_no_best_and_fails(
    real_data_root, tmp_path
):
    run = tmp_path / "run"
    poison = ["+callbacks.nan._target_=tests.scale_helpers.NaNWeights"]
    with pytest.raises(FloatingPointError, match="no best checkpoint"):
        tiny_run(real_data_root, run, *poison)
    assert not list((run / "checkpoints").glob("best-*.ckpt"))
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize("max_length,split", [(2, "train"), (5, "valid")])
def test_a_length_filter_that_empties_a_split_is_an_error(
    max_length, split, real_data_root, tmp_path
):
    cfg = compose_config(
        "train",
        [
            "experiment=ptb/af_af",
            *TINY,
            f"data.root={real_data_root}",
            f"data.max_length={max_length}",
        ],
        tmp_path / "run",
    )
    with pytest.raises(
        DataError, match=rf"the {split} split has no sequences .*max_length={max_length}"
    ):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()


# ----------------------------------------------------------------- 5: debris, finished runs
def test_resume_cleans_debris_and_a_finished_run_changes_nothing(finished_run, real_data_root):
    ckpts = finished_run / "checkpoints"
    (ckpts / ".tmp-last.ckpt.abc123").write_bytes(b"half a checkpoint")
    (ckpts / "best-epoch030.ckpt").write_bytes(b"stale")
    metrics = (finished_run / "metrics.json").read_text()
    last = (ckpts / "last.ckpt").read_bytes()
    value, payload = tiny_run(real_data_root, finished_run, "ckpt_path=auto")
    assert payload["already_finished"] == "max_epochs=1 reached"
    assert value == json.loads(metrics)["val"]["nll"]
    assert (finished_run / "metrics.json").read_text() == metrics  # not rewritten
    assert (ckpts / "last.ckpt").read_bytes() == last  # not bumped
    names = {p.name for p in ckpts.iterdir()}
    assert not any(n.startswith(".tmp-") for n in names) and "best-epoch030.ckpt" not in names
    # Raising max_epochs continues the run (that is not a finished run).
    _, more = tiny_run(real_data_root, finished_run, "ckpt_path=auto", "trainer.max_epochs=2")
    assert more["epochs"] == 2 and "already_finished" not in more


# ----------------------------------------------------------------- 6: sampling past the support
def test_sampling_beyond_the_length_support_needs_a_flag(finished_run, tmp_path):
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"length=100000 is beyond the model's support"):
        sample(compose_config("sample", [f"ckpt_path={ckpt}", "length=100000"], tmp_path / "s"))
    assert not (tmp_path / "s").exists()
    cfg = compose_config(
        "sample",
        [f"ckpt_path={ckpt}", "length=170", "allow_long=true", "num_samples=1"],
        tmp_path / "t",
    )
    assert sample(cfg)["lengths"] == [170]


# ----------------------------------------------------------------- 7: bad checkpoints
@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "empty", "directory"])
def test_bad_ckpt_paths_are_one_line_before_any_work(kind, finished_run, real_data_root, tmp_path):
    bad = tmp_path / "bad.ckpt"
    good = finished_run / "checkpoints" / "last.ckpt"
    if kind == "text":
        bad.write_text("hello, I am not a checkpoint\n" * 4)
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[:20_000])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "directory":
        bad.mkdir()
    new_run = tmp_path / "new"
    with pytest.raises(ConfigError, match=r"^ckpt_path: ") as info:
        tiny_run(real_data_root, new_run, f"ckpt_path={bad}")
    assert "\n" not in str(info.value)
    assert not (new_run / "config.yaml").exists()
    if kind in ("truncated", "text"):
        for tool in ("eval", "sample"):
            with pytest.raises(ConfigError, match=r"^ckpt_path: "):
                cfg = compose_config(tool, [f"ckpt_path={bad}"], tmp_path / tool)
                (sample if tool == "sample" else __import__("latentflow.run").run.evaluate)(cfg)


def test_a_corrupt_last_ckpt_found_by_auto_is_one_line(finished_run, real_data_root):
    last = finished_run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(ConfigError, match=r"ckpt_path: cannot read .*last\.ckpt: truncated"):
        tiny_run(real_data_root, finished_run, "ckpt_path=auto", "trainer.max_epochs=2")


# ----------------------------------------------------------------- 9: a full disk
@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_is_one_line(real_data_root, tmp_path):
    """A file-size limit makes every checkpoint write fail (as a full disk would): one line
    saying what could not be written and that the previous file is intact."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    run = tmp_path / "run"
    proc = subprocess.run(
        train_command(*JSB, f"hydra.run.dir={run}", "trainer.max_epochs=2"),
        cwd=REPO,
        env=subprocess_env(real_data_root),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("latentflow-train: error: could not write the checkpoint "), last
    assert "intact" in last or "no earlier file" in last
    assert "Traceback" not in proc.stderr
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


# ----------------------------------------------------------------- 10: one-line CLI errors
@pytest.mark.slow
@pytest.mark.parametrize(
    "override,key",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("data.batch_size=-1", "data.batch_size"),
        ("data.limit_sequences=0", "data.limit_sequences"),
        ("data.name=xyz", "data.name"),
        ("trainer.max_epochs=-5", "trainer.max_epochs"),
        ("trainer=gpu", "trainer.accelerator"),
        ("seed=abc", "seed"),
        ("model.latent_dim=3", "model.latent_dim"),
        ("data=xyz", "data/xyz"),
        ("optimizer.lr=inf", "optimizer.lr"),
    ],
)
def test_cli_errors_are_one_line_naming_the_key(override, key, real_data_root, tmp_path):
    proc = subprocess.run(
        train_command(*JSB, override, f"hydra.run.dir={tmp_path / 'run'}"),
        cwd=REPO,
        env=subprocess_env(real_data_root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("latentflow-train: error: "), proc.stderr
    assert key in errors[0] and "Traceback" not in proc.stderr


def test_ptb_max_length_one_is_refused(tmp_path):
    cfg = compose_config("train", ["experiment=ptb/af_af", "data.max_length=1"], tmp_path)
    with pytest.raises(ValueError, match="data.max_length must be an integer >= 2"):
        train(cfg)


def test_mat_values_and_foreign_npz_are_named_for_what_they_are(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    for value, shown in ((2.0, "2.0"), (np.nan, "nan")):
        roll = np.zeros((3, 88))
        roll[1, 5] = value
        cells = np.empty((1, 1), dtype=object)
        cells[0, 0] = roll
        path = tmp_path / "bad.mat"
        scipy_io.savemat(path, {f"{s}data": cells for s in music.SPLITS})
        with pytest.raises(
            DataError, match=rf"holds {shown} at step 1, note 26: a piano roll is 0/1"
        ):
            music.arrays_from_mat(path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match="not an .npz archive"):
        music.read_npz(junk)


# ----------------------------------------------------------------- 12: local files verified
def test_a_one_byte_change_in_a_local_data_file_is_caught_once_hashed(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTFLOW_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "root"
    (root / "ptb").mkdir(parents=True)
    body = b"a b c _ d\n" * 1000
    for split in ("train", "valid", "test"):
        (root / f"ptb/ptb.char.{split}.txt").write_bytes(body)
    sums = {
        f"ptb/ptb.char.{s}.txt": download.hashlib.sha256(body).hexdigest()
        for s in ("train", "valid", "test")
    }
    calls = []
    real = download.sha256_file
    monkeypatch.setattr(download, "sha256_file", lambda p: calls.append(p) or real(p))
    from latentflow.data import ptb

    ptb.prepare_ptb(root, download=False, checksums=sums)
    assert len(calls) == 3
    ptb.prepare_ptb(root, download=False, checksums=sums)
    assert len(calls) == 3, "verified files are not hashed again"
    path = root / "ptb/ptb.char.train.txt"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))  # same size, new mtime
    with pytest.raises(
        DataError, match=r"ptb\.char\.train\.txt: not the known ptb/ptb\.char\.train\.txt"
    ):
        ptb.prepare_ptb(root, download=False, checksums=sums)
    ptb.prepare_ptb(root, download=False, checksums=sums, verify=False)  # the way out


def test_a_duplicate_note_in_one_step_is_refused(tmp_path):
    arrays = {}
    for split in music.SPLITS:
        arrays[f"{split}_notes"] = np.array([60, 60, 64], dtype=np.uint8)
        arrays[f"{split}_step_offsets"] = np.array([0, 2, 3], dtype=np.int64)
        arrays[f"{split}_seq_offsets"] = np.array([0, 2], dtype=np.int64)
    path = tmp_path / "dup.npz"
    music.write_npz(path, arrays)
    with pytest.raises(DataError, match="note 60 twice in train sequence 0, step 0"):
        music.read_npz(path)


# ----------------------------------------------------------------- 13: failed downloads
def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError):
        music.prepare_music(root, "jsb_chorales", download=True, base_url="http://127.0.0.1:9")
    assert list(root.iterdir()) == []


# ----------------------------------------------------------------- 11: every recipe, debug=tiny
def _recipes() -> list[str]:
    from latentflow.run import CONF_DIR

    root = Path(CONF_DIR) / "experiment"
    return sorted(
        str(p.relative_to(root).with_suffix(""))
        for p in root.rglob("*.yaml")
        if not p.name.startswith("_")
    )


@pytest.mark.slow
@pytest.mark.parametrize("experiment", _recipes())
def test_every_recipe_runs_with_debug_tiny(experiment, real_data_root, tmp_path):
    """README's smoke run on every row (cpu/ptb/* crashed: a quarter of a tiny valid split)."""
    cfg = compose_config(
        "train",
        [f"experiment={experiment}", *TINY, f"data.root={real_data_root}", "test=false"],
        tmp_path,
    )
    value, payload = train(cfg)
    assert value is not None and payload["epochs"] == 1
