"""A study's search space: ``sweep.params`` in Hydra's sweep syntax, as Optuna suggestions.

    sweep:
      params:
        optimizer.lr: tag(log, interval(1e-4, 3e-3))   # a float, sampled on a log scale
        prior.flow.num_layers: choice(3, 5)            # one of a list
        prior.latent_dim: range(2, 10, 2)              # an integer with a step
        trainer.max_epochs: 20                         # a fixed value for every trial

The syntax is the one Hydra's Optuna sweeper read (``interval``, ``range``, ``choice`` and
``tag(log, ...)``), so a search space written for it works unchanged. Each trial turns the
values it draws into command-line overrides (``override_text``), which its run directory's
``config.yaml`` records resolved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from latentflow.config_checks import ConfigError

SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One key of the space: ``kind`` is choice, float, int or fixed."""

    key: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None


def parse_space(params: Mapping[str, Any] | None) -> list[Param]:
    """The parameters of ``sweep.params``; a key whose value is not valid syntax is one
    ConfigError naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    space = []
    for key, text in (params or {}).items():
        name = f"sweep.params.{key}"
        try:
            override = parser.parse_override(f"{key}={text}")
        except HydraException as err:
            detail = " ".join(str(err).split())[:200]
            raise ConfigError(f"{name}: not a choice, range or interval ({detail})") from None
        space.append(param_of(name, key, override.value()))
    return space


def param_of(name: str, key: str, value: Any) -> Param:
    """A parsed override value (a Hydra sweep object or a plain value) as a ``Param``."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    if isinstance(value, ChoiceSweep):
        choices = tuple(value.list)
        if not choices or not all(isinstance(c, SCALARS) for c in choices):
            raise ConfigError(f"{name}: choice() takes one or more numbers, strings or null")
        return Param(key, "choice", choices=choices)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        ints = isinstance(value.start, int) and isinstance(value.end, int)
        if value.start is None or value.end is None or not value.start < value.end:
            raise ConfigError(f"{name}: interval(low, high) needs low < high")
        if log and value.start <= 0:
            raise ConfigError(f"{name}: a log interval needs low > 0")
        kind = "int" if ints else "float"
        return Param(key, kind, low=value.start, high=value.end, log=log)
    if isinstance(value, RangeSweep):
        step = value.step or 1
        values = [value.start + i * step for i in range(int((value.stop - value.start) / step))]
        if not values:
            raise ConfigError(f"{name}: range(start, stop, step) holds no value")
        ints = all(isinstance(v, int) for v in (value.start, value.stop, step))
        return Param(key, "int" if ints else "float", low=values[0], high=values[-1], step=step)
    if not isinstance(value, SCALARS):
        raise ConfigError(f"{name}: a fixed value must be a number, a string or null")
    return Param(key, "fixed", choices=(value,))


def suggest(trial: Any, space: list[Param]) -> dict[str, Any]:
    """The values ``trial`` (an ``optuna.Trial``) draws for ``space``, by key."""
    values: dict[str, Any] = {}
    for p in space:
        if p.kind == "fixed":
            values[p.key] = p.choices[0]
        elif p.kind == "choice":
            values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.kind == "int":
            step = int(p.step or 1)
            values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=step, log=p.log)
        else:
            values[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
    return values


def grid_of(space: list[Param]) -> dict[str, list[Any]]:
    """The grid of a GridSampler study: every key must be a choice or an integer range."""
    grid: dict[str, list[Any]] = {}
    for p in space:
        if p.kind == "choice":
            grid[p.key] = list(p.choices)
        elif p.kind == "int" and p.step is not None:
            grid[p.key] = list(range(int(p.low), int(p.high) + 1, int(p.step)))
        elif p.kind != "fixed":
            raise ConfigError(
                f"sweep.params.{p.key}: a GridSampler study needs choice() or an integer "
                "range() for every key"
            )
    return grid


PLAIN = re.compile(r"[\w./:+-]+")


def override_text(key: str, value: Any) -> str:
    """``key=value`` as a command line would write it (null, true/false, quoted text)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str) and not PLAIN.fullmatch(value):
        text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        text = str(value)
    return f"{key}={text}"
