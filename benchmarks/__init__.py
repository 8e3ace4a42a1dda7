"""Speed benchmarks of latentflow, each run from the repository root as a module:
``python -m benchmarks.bench_train --quick``. Their rows go to ``benchmarks/results/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs ``benchmarks.<module>`` in a fresh interpreter."""
    return [sys.executable, "-m", f"benchmarks.{module}", *args]


def module_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this repository on ``PYTHONPATH``, so that a
    ``module_command`` finds ``benchmarks`` from any working directory."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env
