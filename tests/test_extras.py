"""Optional features are extras: missing, each says in one line what to install;
the allocator tuning runs only where the model runs on the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import tomllib

from latentflow.cli import one_line
from latentflow.config_checks import ConfigError
from latentflow.configs import tune_malloc_here
from latentflow.tracking import check_logger_extras

from .helpers import compose_config

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_the_core_install_pulls_no_optional_feature():
    core = " ".join(PYPROJECT["project"]["dependencies"])
    for name in ("wandb", "tensorboard", "submitit", "optuna", "rich"):
        assert name not in core, name
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"wandb", "tensorboard", "slurm", "sweep"} <= set(extras)
    assert all("<" in req or "==" in req for req in extras["wandb"]), "an upper bound"


@pytest.mark.parametrize("logger,extra", [("wandb", "wandb"), ("tensorboard", "tensorboard")])
def test_a_logger_without_its_library_names_the_extra(logger, extra, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    absent = {"wandb"} if logger == "wandb" else {"tensorboard", "tensorboardX"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n in absent else real(n, *a)
    )
    cfg = compose_config("train", [f"logger={logger}"], tmp_path)
    with pytest.raises(
        ConfigError, match=rf"needs the {extra} extra: pip install 'latentflow\[{extra}\]'"
    ):
        check_logger_extras(cfg)


def test_missing_hydra_plugins_name_their_extra():
    class Missing(Exception):
        def __str__(self) -> str:
            return "In 'hydra/launcher/slurm': Could not find 'hydra/launcher/submitit_slurm'"

    assert one_line(Missing()).endswith("pip install 'latentflow[slurm]'")


@pytest.mark.parametrize(
    "overrides,expected",
    [([], True), (["trainer=gpu"], False), (["runtime.tune_malloc=false"], False)],
)
def test_malloc_tuning_only_on_the_cpu(overrides, expected, tmp_path):
    assert tune_malloc_here(compose_config("train", overrides, tmp_path)) is expected
    sample = compose_config("sample", ["ckpt_path=x", "device=cuda:0"], tmp_path)
    assert tune_malloc_here(sample) is False
