"""benchmarks/csv_rows.py: the rows every benchmark writes, all or nothing."""

import csv

import pytest

from .helpers import load_benchmark


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
