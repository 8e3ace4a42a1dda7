"""The layering the README promises: a pure-PyTorch core, thin entry points over one runner."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "latentflow"
ENTRY_POINTS = ("train", "evaluate", "sample", "plot_cli", "prepare")
CORE = ("latentflow.flows", "latentflow.models", "latentflow.protocols", "latentflow.components")


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_no_entry_point_imports_another(entry):
    others = {f"latentflow.{e}" for e in ENTRY_POINTS if e != entry}
    assert not imported_modules(SRC / f"{entry}.py") & others


def test_entry_points_are_thin():
    for entry in ("train", "evaluate", "sample"):
        assert len((SRC / f"{entry}.py").read_text().splitlines()) < 80, entry


def test_the_core_imports_neither_lightning_nor_hydra():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('pytorch_lightning', 'lightning', 'lightning_fabric', 'hydra', 'omegaconf')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
