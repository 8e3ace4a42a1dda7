"""The benchmarks package: the rows every benchmark writes (all or nothing), its modules run as
``python -m benchmarks.<name>``, and the models they time come from latentflow.recipes."""

import ast
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentflow import recipes

from .helpers import load_benchmark, run_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__")


def tiny_ceiling(precisions: str, out) -> list[str]:
    """bench_ceiling's arguments for a smoke run: tiny shapes, 1 thread, 1 repeat."""
    return ["--tiny", "--threads", "1", "--precisions", precisions, "--repeats", "1",
            "--out", str(out)]  # fmt: skip


def load_csv_rows():
    return load_benchmark("csv_rows")


def test_rows_are_written_with_their_header_in_a_new_folder(tmp_path):
    path = tmp_path / "new" / "rows.csv"
    load_csv_rows().write_rows(path, [{"model": "af_af", "s": 1.5}, {"model": "lstm", "s": 0.1}])
    with open(path) as f:
        assert list(csv.DictReader(f)) == [
            {"model": "af_af", "s": "1.5"},
            {"model": "lstm", "s": "0.1"},
        ]
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.csv"]


def test_a_crash_while_writing_leaves_the_previous_file(tmp_path):
    path = tmp_path / "rows.csv"
    write_rows = load_csv_rows().write_rows
    write_rows(path, [{"a": 1}])
    before = path.read_text()
    with pytest.raises(ValueError):  # a row with a key the header lacks fails mid-write
        write_rows(path, [{"a": 2}, {"b": 3}])
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_the_ceiling_benchmark_counts_an_lstm_as_flop_counter_mode_does():
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from latentflow.models.recurrent import native_rnn

    bench = load_benchmark("bench_ceiling")
    # one step of a 1-wide LSTM: forward 16; backward 8 each for the input's gradient, W_ih's
    # and W_hh's, none into the zero initial state
    assert bench.lstm_flops(1, 1, 1, 1, 1) == 16 + 3 * 8
    rows, steps, inputs, hidden, layers = 3, 4, 5, 6, 2
    lstm = nn.LSTM(inputs, hidden, layers, batch_first=True)
    x = torch.randn(rows, steps, inputs, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with native_rnn(), counter:  # the LSTM decomposed into its matmuls
        lstm(x)[0].sum().backward()
    assert bench.lstm_flops(rows, steps, inputs, hidden, layers) == counter.get_total_flops()


def test_the_ceiling_benchmark_writes_its_rows_and_refuses_bad_input(
    tmp_path, monkeypatch, capsys
):
    bench = load_benchmark("bench_ceiling")
    out = tmp_path / "ceiling.csv"
    run_benchmark(bench, tiny_ceiling("fp32", out), monkeypatch)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["kernel"].split()[0] for r in rows] == ["mm", "mm", "lstm"]
    assert all(float(r["gflops"]) > 0 and r["threads"] == "1" for r in rows)
    assert "LSTM/best" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        run_benchmark(bench, ["--precisions", "fp16"], monkeypatch)
    assert stop.value.code == 2 and "--precisions fp32,bf16" in capsys.readouterr().err


def test_the_ceiling_benchmark_skips_bf16_where_it_would_be_emulated(
    tmp_path, monkeypatch, capsys
):
    from latentflow import runtime

    bench = load_benchmark("bench_ceiling")
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    out = tmp_path / "ceiling.csv"
    run_benchmark(bench, tiny_ceiling("fp32,bf16", out), monkeypatch)
    with open(out) as f:
        assert {r["precision"] for r in csv.DictReader(f)} == {"fp32"}
    assert "bf16 skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="nothing to measure"):
        run_benchmark(bench, ["--precisions", "bf16"], monkeypatch)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_imports_as_a_module_of_the_package_without_path_edits(name):
    tree = ast.parse((REPO / "benchmarks" / f"{name}.py").read_text())
    edits = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "path"
        and isinstance(node.value, ast.Name) and node.value.id == "sys"
    ]  # fmt: skip
    assert not edits, f"benchmarks/{name}.py touches sys.path (lines {edits})"
    assert load_benchmark(name).__name__ == f"benchmarks.{name}"


def test_a_benchmark_runs_with_python_dash_m_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_train", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--quick" in done.stdout


def test_the_benchmarks_time_the_recipes_models_and_variants():
    train, sample = load_benchmark("bench_train"), load_benchmark("bench_sample")
    assert (
        train.MODELS
        == ("lstm", *recipes.main_models()[:-1])
        == ("lstm", "af_af", "af_scf", "iaf_scf")
    )
    assert set(train.VARIANTS) == {v.name for v in recipes.VARIANTS}
    spec = {"model": "af_af_spline", "sizes": {}}
    assert load_benchmark("train_rows").row_overrides(spec)[:2] == [
        "prior=af_af",
        "transform=spline",
    ]
    assert (
        load_benchmark("train_rows").row_overrides({"model": "lstm", "sizes": {}})[0]
        == "model=lstm"
    )
    known = {*recipes.models(), *train.VARIANTS, "lstm_nnlstm"}
    assert set(sample.MODELS) <= known
    assert sample.chosen_models("iaf_scf,af_only_spline") == ["iaf_scf", "af_only_spline"]
    with pytest.raises(SystemExit, match="af_af\\+spline"):
        sample.chosen_models("af_af+spline")
    rows = load_benchmark("gpu_paper_rows").ROWS
    assert set(rows) == {
        r.name for d in ("jsb", "nottingham") for r in recipes.recipes(d, "paper")
    }


def test_the_successor_benchmark_times_a_step_and_a_generation_per_recipe(
    tmp_path, monkeypatch, capsys
):
    bench = load_benchmark("bench_successor")
    args = ["--tiny", "--threads", "1", "--models", "af_af,tarflowlm", "--datasets", "jsb",
            "--steps", "1", "--repeats", "1", "--out-dir", str(tmp_path)]  # fmt: skip
    run_benchmark(bench, args, monkeypatch)
    with open(tmp_path / "successor_speed.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["model"]) for r in rows] == [("jsb", "af_af"), ("jsb", "tarflowlm")]
    assert all(float(r["step_s"]) > 0 and float(r["sample_s"]) > 0 for r in rows)
    assert all(r["threads"] == "1" and r["elbo_samples"] == "2" for r in rows)  # debug=tiny's K
    with pytest.raises(SystemExit, match="unknown dataset or recipe"):
        run_benchmark(bench, ["--models", "af_afx"], monkeypatch)
    with pytest.raises(SystemExit) as stop:
        run_benchmark(bench, ["--steps", "0"], monkeypatch)
    assert stop.value.code == 2 and "must be >= 1" in capsys.readouterr().err
