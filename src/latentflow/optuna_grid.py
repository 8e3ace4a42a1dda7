"""A used-up grid must not end an Optuna sweep with a RuntimeError.

Once the grid is used up, optuna 2.x's ``GridSampler.after_trial`` calls ``Study.stop()``, which
raises outside ``Study.optimize`` -- and hydra-optuna-sweeper 1.3 drives the study by ask/tell,
so the last trial of a grid study (or any trial of a continued one) ended the sweep. The sweeper
builds its sampler itself (a subclass cannot be selected), so ``CreateSweepDir`` (the
``_optuna`` base's callback) patches ``after_trial`` once per sweep process: the used-up grid is
left to ``n_trials``, which bounds the sweep anyway.
"""

from __future__ import annotations

from typing import Any


def let_a_used_up_grid_end_quietly() -> None:
    try:
        from optuna.samplers import GridSampler
    except ImportError:  # no sweep extra: no Optuna sweep either
        return
    original = GridSampler.after_trial
    if getattr(original, "_latentflow", False):
        return

    def after_trial(self: Any, study: Any, trial: Any, state: Any, values: Any) -> None:
        try:
            original(self, study, trial, state, values)
        except RuntimeError as error:
            if "Study.stop" not in str(error):
                raise

    after_trial._latentflow = True  # type: ignore[attr-defined]
    GridSampler.after_trial = after_trial  # type: ignore[method-assign]
