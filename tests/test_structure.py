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
    unsafe = [  # a load that asks to unpickle code (saving the full state is no load)
        f"{f}:{n}"
        for f in files
        if f.is_file()
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if "weights_only=False" in line and "save_checkpoint(" not in line
    ]
    assert not unsafe
    loaders = [
        str(f.relative_to(SRC)) for f in SRC.rglob("*.py") if "torch.load(" in f.read_text()
    ]
    assert loaders == ["lightning/checkpoint_io.py"]


# -- Lightning's private API: only lightning/internals.py reaches into it ----------------------
LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")
LIGHTNING_OBJECTS = {"trainer", "timer", "fit_loop", "epoch_loop", "batch_progress", "strategy"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _named(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")


def _lightning_bases(tree: ast.Module) -> dict[str, set[str]]:
    """Class name -> private names (methods and ``self._x`` attributes) that the Lightning
    classes it derives from define, for each class of the module with a Lightning base."""
    import importlib
    import inspect
    import re

    imported = {}  # local name -> dotted path
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIGHTNING:
            imported |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.asname or a.name: a.name for a in node.names}
    out = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        names: set[str] = set()
        for base in cls.bases:
            path = ast.unparse(base).split(".")
            if path[0] not in imported or imported[path[0]].split(".")[0] not in LIGHTNING:
                continue
            module, _, attr = ".".join([imported[path[0]], *path[1:]]).rpartition(".")
            for owner in getattr(importlib.import_module(module), attr).__mro__:
                if owner.__module__.split(".")[0] in LIGHTNING:
                    names |= {n for n in vars(owner) if _private(n)}
                    names |= set(re.findall(r"self\.(_\w+)", inspect.getsource(owner)))
        if names:
            out[cls.name] = {n for n in names if _private(n)}
    return out


def lightning_private_uses(source: str) -> list[str]:
    """``line: code`` for each use of Lightning's private API in ``source``: a private attribute
    of a trainer, timer or loop (also through getattr/setattr/hasattr), ``super()._x``, and, in a
    class derived from a Lightning class, a private method or attribute Lightning defines."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if _named(owner) in LIGHTNING_OBJECTS or (
                isinstance(owner, ast.Call) and _named(owner.func) == "super"
            ):
                found.append(node)
        elif isinstance(node, ast.Call) and _named(node.func) in ("getattr", "setattr", "hasattr"):
            args = node.args
            if len(args) >= 2 and _named(args[0]) in LIGHTNING_OBJECTS:
                if isinstance(args[1], ast.Constant) and _private(str(args[1].value)):
                    found.append(node)
    lightning_private = _lightning_bases(tree)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        private = lightning_private.get(cls.name, set())
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef) and node.name in private:
                found.append(node)
            elif isinstance(node, ast.Attribute) and node.attr in private:
                if _named(node.value) == "self":
                    found.append(node)
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    return [f"{n.lineno}: {ast.get_source_segment(source, n)}".splitlines()[0] for n in found]


def test_the_private_api_scan_finds_each_kind_of_use():
    source = (
        "import pytorch_lightning as pl\n"
        "from pytorch_lightning.callbacks import ModelCheckpoint\n"
        "def f(trainer, timer):\n"
        "    a = timer._duration\n"
        "    b = getattr(trainer, '_signal_connector', None)\n"
        "    return trainer.fit_loop._restarting, a, b\n"
        "class Best(ModelCheckpoint):\n"
        "    def _save_topk_checkpoint(self, trainer, candidates):\n"
        "        super()._save_topk_checkpoint(trainer, candidates)\n"
        "        self._last_global_step_saved = 0\n"
        "        self._mine = 1\n"
        "class Mine(pl.Callback):\n"
        "    def _helper(self):\n"
        "        return self._state\n"
    )
    lines = [int(use.split(":")[0]) for use in lightning_private_uses(source)]
    assert lines == [4, 5, 6, 8, 9, 10]  # not _mine, _helper, _state: our own names


def test_only_the_internals_module_touches_lightnings_private_api():
    """Lightning's private API changes without notice: ``lightning/internals.py`` wraps each use
    (one module to fix after an upgrade); nothing else in the package reaches past the public
    API."""
    uses = {
        str(f.relative_to(SRC)): lightning_private_uses(f.read_text())
        for f in sorted(SRC.rglob("*.py"))
        if f != SRC / "lightning" / "internals.py"
    }
    assert {path: found for path, found in uses.items() if found} == {}


# -- Size and privacy: modules a reader takes in at once -------------------------------------
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def python_files() -> list[Path]:
    root = SRC.parents[1]
    return [*SRC.rglob("*.py"), *(root / "benchmarks").rglob("*.py")]


def test_no_module_over_400_lines_and_no_function_over_60():
    long_modules, long_functions = [], []
    for path in python_files():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(str(path))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path}:{node.lineno} {node.name} ({length} lines)")
    assert long_modules == [] and long_functions == []


def private_imports(text: str) -> list[str]:
    """``from latentflow.x import _name`` (or benchmarks.x): a private name of another module."""
    return [
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ImportFrom) and node.module
        and node.module.split(".")[0] in ("latentflow", "benchmarks")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]  # fmt: skip


def test_no_module_imports_a_private_name_of_another():
    root = SRC.parents[1]
    files = [*python_files(), *(root / "tests").rglob("*.py"), *(root / "scripts").glob("*.py")]
    found = [f"{path}: {name}" for path in files for name in private_imports(path.read_text())]
    assert found == []
    assert private_imports("from latentflow.data.base import _helper") == [
        "latentflow.data.base._helper"
    ]
