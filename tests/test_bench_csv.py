"""benchmarks/csv_rows.py: the rows every benchmark writes, all or nothing."""

import csv

import pytest
import torch

from .helpers import load_benchmark, run_benchmark


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
