"""Shared test settings: one thread (on 2-core machines 2 threads made a tiny fit 90x slower)
and a data-root fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def _default_data_root() -> Path:
    env = os.environ.get("LATENTFLOW_DATA")
    if env:
        return Path(env)
    sibling = Path(__file__).resolve().parents[2] / "shared" / "data"
    return sibling if sibling.exists() else Path("data")


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real datasets (CI sets LATENTFLOW_DATA to the data beside the clone); else skip."""
    root = _default_data_root()
    if not (root / "ptb").exists() or not (root / "music").exists():
        pytest.skip(f"real data not found under {root}")
    return root


@pytest.fixture
def float64():
    """Run a test in float64 and restore the default dtype after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
