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


def test_every_checkpoint_read_goes_through_the_safe_loader():
    """Unpickling runs code unless ``weights_only=True``: the package, benchmarks, scripts and
    notebooks never ask for the unsafe load, and only ``checkpoint_io`` calls ``torch.load``."""
    root = SRC.parents[1]
    files = [
        *SRC.rglob("*.py"),
        *(root / "benchmarks").rglob("*.py"),
        *(root / "scripts").glob("*"),
    ]
    files += [*(root / "notebooks").glob("*.ipynb")]
    unsafe = [str(f) for f in files if f.is_file() and "weights_only=False" in f.read_text()]
    assert not unsafe
    loaders = [
        str(f.relative_to(SRC)) for f in SRC.rglob("*.py") if "torch.load(" in f.read_text()
    ]
    assert loaders == ["lightning/checkpoint_io.py"]
