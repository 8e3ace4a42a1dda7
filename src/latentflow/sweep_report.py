"""What a study did, for ``latentflow-sweep --summary <dir>``: its best trials with their
overrides and value, how many completed, were pruned or failed, and two plots in the sweep
directory, ``history.png`` (every trial's value and the best so far) and ``importance.png``
(how much each parameter mattered, PED-ANOVA: no scikit-learn needed).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from latentflow.study import SURPLUS, find_storage, retried

log = logging.getLogger("latentflow.sweep")


def load_study(directory: Path) -> Any:
    """The (one) study stored in a sweep directory."""
    import optuna

    from latentflow.config_checks import ConfigError

    if not directory.is_dir():
        raise ConfigError(f"--summary: {directory} is not a directory")
    storage = find_storage(directory)
    names = optuna.get_all_study_names(storage)
    if len(names) != 1:
        raise ConfigError(f"--summary: {directory} holds {len(names)} studies: {names}")
    return optuna.load_study(study_name=names[0], storage=storage)


def counts(study: Any) -> dict[str, int]:
    """Trials by how they ended; a FAIL a later trial retried is ``retried``, not failed."""
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    tally: Counter[str] = Counter()
    for t in trials:
        if t.user_attrs.get(SURPLUS):
            continue
        name = t.state.name.lower()
        tally["retried" if name == "fail" and t.number in again else name] += 1
    return {k: tally[k] for k in ("complete", "pruned", "fail", "retried", "running", "waiting")}


def summary(study: Any, directory: Path, top: int) -> str:
    """The summary's text."""
    from optuna.trial import TrialState

    tally = counts(study)
    lines = [
        f"study {study.study_name} in {directory}: {tally['complete']} complete, "
        f"{tally['pruned']} pruned, {tally['fail']} failed"
        + "".join(f", {tally[k]} {k}" for k in ("retried", "running", "waiting") if tally[k])
    ]
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.direction.name == "MAXIMIZE"
    best = sorted(done, key=lambda t: t.value, reverse=reverse)[:top]
    if best:
        lines.append(f"best {len(best)} ({study.direction.name.lower()} the value):")
    for rank, t in enumerate(best, 1):
        overrides = " ".join(t.user_attrs.get("overrides", []))
        lines.append(f"  {rank}. trial {t.number}  value {t.value:.4f}  {overrides}")
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
    for t in failed:
        if t.user_attrs.get("error"):
            lines.append(f"  failed: trial {t.number}: {t.user_attrs['error']}")
    return "\n".join(lines)


def plot(study: Any, directory: Path) -> list[Path]:
    """``history.png`` and, with two or more complete trials, ``importance.png``; each written
    whole (to a temporary name, then renamed: concurrent workers may plot at once)."""
    import matplotlib

    matplotlib.use("Agg")  # optuna.visualization.matplotlib draws with pyplot
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawings = {"history.png": lambda: optuna_plots.plot_optimization_history(study)}
    if len(complete) >= 2 and any(len(t.params) for t in complete):
        evaluator = PedAnovaImportanceEvaluator()
        drawings["importance.png"] = lambda: optuna_plots.plot_param_importances(
            study, evaluator=evaluator
        )
    with quiet_experimental():
        for name, draw in drawings.items():
            try:
                figure = draw().figure
            except (ValueError, RuntimeError) as err:  # too few trials for the method
                log.warning("%s not drawn: %s", name, err)
                continue
            figure.tight_layout()
            tmp = directory / f".{name}.{os.getpid()}.png"
            figure.savefig(tmp, dpi=110)
            plt.close(figure)
            os.replace(tmp, directory / name)
            written.append(directory / name)
    return written


@contextlib.contextmanager
def quiet_experimental() -> Any:
    """Optuna's matplotlib plots warn that they are experimental, on every call."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is experimental.*")
        yield


def report(directory: Path, top: int) -> str:
    """Summary text (also written to ``summary.txt``) and the plots, for a sweep directory."""
    directory = directory.absolute()
    study = load_study(directory)
    text = summary(study, directory, top)
    written = plot(study, directory)
    if written:
        text += "\nplots: " + ", ".join(str(p) for p in written)
    (directory / "summary.txt").write_text(text + "\n")
    return text
