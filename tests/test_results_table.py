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


def test_own_text_datasets_are_tabled_in_bpc_by_their_metrics_not_their_name(tmp_path):
    text = {"nll": 2.0, "nll_paper_bpc": 2.0, "nll_cond_bpc": 1.9, "recon": 0.6931471805599453}
    music = {"nll": 7.0, "nll_paper_nats": 7.0, "nll_cond_nats": 7.05, "recon": 4.0}
    write(tmp_path / "a", {"experiment": "mine/wiki_chars/af_af", "test": text})
    write(tmp_path / "b", {"experiment": "my_recipe", "test": text})  # no folder in its name
    write(tmp_path / "c", {"experiment": "cpu/jsb/af_af", "test": music})
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    tables = out.split("### ")[1:]
    by_name = {t.splitlines()[0]: t for t in tables}
    assert set(by_name) == {"wiki_chars", "my_recipe", "jsb"}
    assert "test NLL (bpc, paper conv.)" in by_name["wiki_chars"]
    assert "| `mine/wiki_chars/af_af` | 2.000 | — | 1.900 | 1.000 |" in by_name["wiki_chars"]
    assert "test NLL (bpc, paper conv.)" in by_name["my_recipe"]
    assert "| `cpu/jsb/af_af` | 7.000 | — | 7.050 | 4.000 |" in by_name["jsb"]


SEED_SCRIPT = SCRIPT.parent / "seed_table.py"


def test_seed_table_gives_mean_sd_and_the_distance_in_base_sds(tmp_path):
    for name, values in {"base": [7.0, 7.2, 7.1], "new": [6.8, 6.9]}.items():
        for seed, v in enumerate(values):
            payload = {
                "test": {"nll_paper_nats": v, "nll_cond_nats": v + 0.05},
                "val": {"nll": v + 0.1},
                "epochs": 40 + seed,
            }
            write(tmp_path / f"{name}_s{seed}", payload)
    write(tmp_path / "not_a_seed_run", {"test": {}})
    cmd = [sys.executable, str(SEED_SCRIPT), str(tmp_path), "--versus", "base"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    new, base = out.splitlines()[2:]  # sorted by mean test NLL, lowest first
    # new: mean 6.85, sd 0.0707; base: mean 7.1, sd 0.1 -> -0.25 = -2.5 base sds
    assert new.startswith("| new | 0,1 | 6.850 ± 0.071 | 6.900 ± 0.071 | 6.800, 6.900 |")
    assert new.endswith("| 40, 41 | -0.250 (-2.5 sd) |")
    assert base.startswith("| base | 0,1,2 | 7.100 ± 0.100 |") and base.endswith("| — |")
    # --paper: the paper's number from metrics.json, our distance in our own seed sds
    for seed in range(3):
        path = tmp_path / f"base_s{seed}" / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "paper": {"test": 6.9}}))
    out = subprocess.run([*cmd, "--paper"], capture_output=True, text=True, check=True).stdout
    new, base = out.splitlines()[2:]
    assert base.endswith("| — | 6.90 | +0.200 (+2.0 sd) |") and new.endswith("| — | — |")
    bad = subprocess.run([*cmd[:-1], "new_row"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no run directory new_row_s<seed>" in bad.stderr


def test_seed_table_tables_text_runs_in_bpc_with_their_steps_and_never_mixes_units(tmp_path):
    for name, values in {"af_af": [2.8, 2.9, 3.0], "tarflowlm": [3.4, 3.6, 3.5]}.items():
        for seed, v in enumerate(values):
            payload = {
                "test": {"nll_paper_bpc": v, "nll_cond_bpc": v - 0.04, "nll_paper_nats": 9.9},
                "val": {"nll": 9.9, "nll_paper_bpc": v + 0.1},
                "epochs": 0,
                "global_step": 500 + seed,
            }
            write(tmp_path / "ptb" / f"{name}_s{seed}", payload)
    cmd = [sys.executable, str(SEED_SCRIPT), str(tmp_path / "ptb"), "--versus", "af_af"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    header, _, base, new = out.splitlines()
    assert "test NLL, paper conv. (bpc)" in header and header.split(" | ")[6] == "steps"
    assert base.startswith("| af_af | 0,1,2 | 2.900 ± 0.100 | 2.860 ± 0.100 | 2.800, 2.900, 3.000")
    assert base.endswith("| 3.000 ± 0.100 | 500, 501, 502 | — |")
    assert new.endswith("| 3.600 ± 0.100 | 500, 501, 502 | +0.600 (+6.0 sd) |")
    write(tmp_path / "jsb" / "af_af_s0", {"test": {"nll_paper_nats": 7.0, "nll_cond_nats": 7.1},
                                          "val": {"nll": 7.2}, "epochs": 40})  # fmt: skip
    mixed = subprocess.run([*cmd[:2], str(tmp_path / "ptb"), str(tmp_path / "jsb")],
                           capture_output=True, text=True)  # fmt: skip
    assert mixed.returncode == 2 and "mix text runs (bpc) and music runs (nats)" in mixed.stderr
