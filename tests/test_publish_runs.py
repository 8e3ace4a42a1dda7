"""scripts/publish_runs.py copies a finished run's small files, never its checkpoints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "publish_runs.py"


def load():
    spec = importlib.util.spec_from_file_location("publish_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finished_runs_are_published_without_checkpoints_and_unfinished_ones_skipped(tmp_path):
    src, dest = tmp_path / "runs", tmp_path / "docs"
    done = src / "af_af_s0"
    for name in ("metrics.json", "config.yaml", "timing.csv", "checkpoints/last.ckpt"):
        (done / name).parent.mkdir(parents=True, exist_ok=True)
        (done / name).write_text(name)
    for version in (0, 1):  # a resumed run: one CSV per process
        (done / f"csv/version_{version}").mkdir(parents=True)
        (done / f"csv/version_{version}/metrics.csv").write_text(f"v{version}")
    (src / "lstm_s0" / "checkpoints").mkdir(parents=True)  # started, not finished
    assert load().publish(src, dest) == ["af_af_s0"]
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [
        "af_af_s0/config.yaml",
        "af_af_s0/csv/version_0/metrics.csv",
        "af_af_s0/csv/version_1/metrics.csv",
        "af_af_s0/metrics.json",
        "af_af_s0/timing.csv",
    ]
