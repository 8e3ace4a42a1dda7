"""Shared helpers for tests that compose the real Hydra configs."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from latentflow.train import CONF_DIR

TINY = ["debug=tiny", "runtime.threads=1", "trainer.enable_progress_bar=false"]


def compose_config(name: str, overrides: list[str], out_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/<name>.yaml`` like the CLI would, with the run directory at ``out_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    if out_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(out_dir)
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run: the task sees no hydra node
    return cfg
