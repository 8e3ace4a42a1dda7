"""Shared test settings: one thread (on 2-core machines 2 threads made a tiny fit 90x slower),
a data-root fixture, and the ``data`` marker on every test that reads the real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def _default_data_root() -> Path:
    return Path(os.environ.get("LATENTFLOW_DATA") or "data")


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real datasets (CI sets LATENTFLOW_DATA to the data beside the clone); else skip."""
    root = _default_data_root()
    if not (root / "ptb").exists() or not (root / "music").exists():
        pytest.skip(f"real data not found under {root}")
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``-m data`` / ``-m "not data"`` select by what a test reads: the real datasets."""
    for item in items:
        if "real_data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture
def float64():
    """Run a test in float64 and restore the default dtype after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
