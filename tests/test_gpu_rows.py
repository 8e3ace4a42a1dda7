"""The GPU paper-rows script, rehearsed on the CPU with a tiny config (a GPU is lent rarely:
the script must work the first time it meets one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from .helpers import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def test_the_time_budget_and_the_row_order():
    rows = load_benchmark("gpu_paper_rows")
    assert rows.budget(59) == "00:00:01:00" and rows.budget(3725) == "00:01:02:05"
    assert rows.ROWS[:2] == ["jsb/af_af", "jsb/iaf_scf"] and rows.ROWS[-1] == "nottingham/lstm"
    cmd = rows.train_command("jsb/af_af", 2, Path("/r"), "gpu", ["x=1"])
    assert "ckpt_path=auto" in cmd and "seed=2" in cmd and "trainer=gpu" in cmd
    assert cmd[-1] == "x=1"


@pytest.mark.slow
def test_a_cpu_rehearsal_trains_the_rows_and_archives_their_small_files(real_data_root, tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    cmd = [sys.executable, "-m", "benchmarks.gpu_paper_rows", "--trainer", "cpu", "--minutes", "4"]
    cmd += ["--rows", "jsb/af_af", "jsb/lstm", "--seeds", "0", "--parallel", "2"]
    cmd += ["--extra", "debug=tiny", "--out", str(out), "--runs", str(runs)]
    env = {**os.environ, "LATENTFLOW_DATA": str(real_data_root)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["torch"] and results["machine"]["smoke_run_s"] > 0
    by_row = {r["row"]: r for r in results["runs"]}
    assert set(by_row) == {"jsb/af_af", "jsb/lstm"}
    for row in by_row.values():
        assert row["finished"] and row["stop_reason"] == "max_epochs"
        assert row["test"]["nll_paper_nats"] > 0 and row["paper"] > 0
    with tarfile.open(out / "paper_rows.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"jsb_af_af_s0/metrics.json", "jsb_lstm_s0/config.yaml"} <= names
    assert not any(name.endswith(".ckpt") for name in names)
