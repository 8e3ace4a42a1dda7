"""scripts/results_table.py: train and re-evaluation runs become rows of docs/results.md tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results_table.py"


def write(run_dir: Path, payload: dict) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(payload))


def test_train_and_eval_runs_are_tabulated(tmp_path):
    test = {
        "nll": 2.5,
        "nll_paper_bpc": 2.5,
        "nll_paper_bpc_stderr": 0.0001,
        "nll_cond_bpc": 2.4,
        "recon": 0.6931471805599453,  # 1 bit
        "kl": 0.0,
    }
    write(
        tmp_path / "train" / "a",
        {
            "experiment": "cpu/ptb/af_af",
            "paper": {"test_nll_bpc": 1.42},
            "test": test,
            "val": {"nll": 2.6},
            "epochs": 1,
            "global_step": 558,
            "train_time_s": 480.0,
        },
    )
    write(
        tmp_path / "eval" / "b",
        {
            "experiment": "cpu/ptb/af_scf",
            "paper": {"test_nll_bpc": 1.46},
            "test": {**test, "nll": 2.7, "nll_paper_bpc": 2.7},
        },
    )
    write(tmp_path / "eval" / "c", {"checkpoint": "x.ckpt", "test": test})  # no experiment
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert out.count("### ptb") == 1 and len(rows) == 2
    assert rows[0].split(" | ")[:2] == ["| `cpu/ptb/af_af`", "2.500"]  # sorted by test NLL
    assert "| 1.000 | 0.000 | 2.600 | 1 | 558 | 8.0 min | 1.42 |" in rows[0]
    assert rows[1].endswith("| — | — | — | — | 1.46 |")
