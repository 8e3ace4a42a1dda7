"""The command-line layer shared by every tool: one error handler (``run_cli`` around Hydra,
``run_task`` around the task), one-line messages, and failed sweep trials.

Errors a user can fix are ``USER_ERRORS``; each ends in one ``latentflow-<tool>: error: ...``
line and exit 2 (``HYDRA_FULL_ERROR=1`` keeps Hydra's own report with its traceback)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latentflow.audio import AudioError
from latentflow.components import ComponentError
from latentflow.config_checks import ConfigError
from latentflow.configs import CONF_DIR
from latentflow.data.download import DataError
from latentflow.hydra_guard import in_sweep
from latentflow.lightning.checkpoint_io import CheckpointWriteError
from latentflow.rundir import write_json

USER_ERRORS = (ConfigError, DataError, ComponentError, CheckpointWriteError, AudioError)


class TrialFailed(Exception):
    """A trial of a sweep that failed with a user-level error: Hydra records it as a failed
    job (an ``Exception``, where ``SystemExit`` would end the whole sweep), the Optuna sweeper
    as a failed trial; the sweep goes on. (``latentflow-sweep`` records its own failed trials:
    ``latentflow.sweep``.)"""

    @classmethod
    def record(cls, run_dir: Path, err: Exception) -> TrialFailed:
        """Write ``failed.json`` (the error and the trial's overrides) in its run directory."""
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"error": str(err), "type": type(err).__name__, "overrides": overrides}
        write_json(run_dir / "failed.json", payload)
        return cls(f"{err} (trial {' '.join(overrides)})")


EXTRA_HINTS = {  # a config that needs an optional extra -> the one line that says which
    "submitit": "the Slurm launcher needs the slurm extra: pip install 'latentflow[slurm]'",
    "optuna": "latentflow-sweep needs the sweep extra: pip install 'latentflow[sweep]'",
}


def unknown_recipe(name: str) -> str:
    """``experiment=<name>`` names no recipe: the recipes of the folder it points into."""
    root = Path(CONF_DIR) / "experiment"
    folder = root / Path(name).parent
    while not folder.is_dir() and folder != root:
        folder = folder.parent
    entries = sorted(
        str((p.relative_to(root)).with_suffix("")) + ("/..." if p.is_dir() else "")
        for p in folder.iterdir()
        if not p.name.startswith("_") and (p.is_dir() or p.suffix == ".yaml")
    )
    return f"experiment={name}: no such recipe (available: {', '.join(entries)})"


def one_line(err: BaseException) -> str:
    """A Hydra/OmegaConf error message (several lines, indented details) as one line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    skip = ("full_key:", "object_type=", "reference_type=", "Set the environment variable")
    lines = [ln for ln in lines if not ln.startswith(skip)]
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    if any(ln.startswith("Available options") for ln in lines):
        i = next(i for i, ln in enumerate(lines) if ln.startswith("Available options"))
        lines = [*lines[:i], f"(available: {', '.join(lines[i + 1 :])})"]
    text = " ".join(lines) or type(err).__name__
    recipe = re.search(r"Could not find '(experiment/[^']*)'", text)
    if recipe:
        return unknown_recipe(recipe[1].removeprefix("experiment/"))
    missing = ("Could not find", "Could not load", "No module named")
    for needle, hint in EXTRA_HINTS.items():
        if needle in text and any(m in text for m in missing):
            return f"{text}: {hint}"
    return text


def run_cli(main: Any, prog: str) -> None:
    """Run a ``hydra.main`` function so that configuration errors Hydra or OmegaConf raise
    (an unknown key or option, a bad override) end in one ``prog: error:`` line, exit 2, like
    the errors latentflow raises itself. ``HYDRA_FULL_ERROR=1`` in the environment keeps
    Hydra's own report (with its traceback)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if os.environ.get("HYDRA_FULL_ERROR"):
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let the errors reach this frame
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except USER_ERRORS as err:  # raised before the task function (the run-directory guard)
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrialFailed as err:  # the basic sweeper re-raises the first failed job at the end
        print(
            f"{prog}: error: the sweep ran every trial, but some failed (each has failed.json "
            f"in its directory); the first: {err}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def run_task(prog: str, task: Callable[[Any], Any], cfg: Any) -> Any:
    """``task(cfg)`` inside a tool's ``hydra.main`` function: an error a user can fix (or a run
    that learned nothing finite, exit 1) is one ``prog: error:`` line; in a sweep it is
    recorded in the trial's directory and raised as ``TrialFailed`` for the sweeper."""
    try:
        return task(cfg)
    except USER_ERRORS as err:
        fail(prog, cfg, err, 2)
    except FloatingPointError as err:  # the non-finite guard gave up, or nothing was learned
        fail(prog, cfg, err, 1)


def fail(prog: str, cfg: Any, err: Exception, code: int) -> None:
    """One line on stderr; then exit ``code``, or, in a sweep, let the sweeper record it."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    if in_sweep():
        raise TrialFailed.record(Path(cfg.paths.output_dir), err) from None
    raise SystemExit(code) from None
