"""Start-up validation: every bad setting is a one-line error naming its config key, raised
before any data is read or any model is built."""

from __future__ import annotations

from typing import Any

from latentflow.flows import HIDDEN_FLOWS, TRANSFORMS
from latentflow.lightning.anneal import SCHEDULE_KINDS
from latentflow.models.factory import MODEL_KINDS
from latentflow.models.priors import TIME_FLOWS


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


def _positive_int(cfg: Any, key: str, minimum: int = 1) -> None:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if node is not None else None
    if node is None:
        return
    if isinstance(node, bool) or not isinstance(node, int) or node < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {node!r}")


def _choice(value: Any, key: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def validate_train_config(cfg: Any) -> None:
    """Check names and sizes of a composed training config (a DictConfig or a dict)."""
    model, prior = cfg.get("model") or {}, cfg.get("prior") or {}
    _choice(model.get("kind", "flow"), "model.kind", MODEL_KINDS)
    for key in ("embed_dim", "hidden_dim", "num_layers", "pos_dim"):
        _positive_int(cfg, f"model.{key}")
    _positive_int(cfg, "train.elbo_samples")
    _positive_int(cfg, "eval.num_samples")
    _positive_int(cfg, "eval.chunk_size")
    _positive_int(cfg, "eval.val_num_samples")
    lr = (cfg.get("train") or {}).get("lr", 1e-3)
    if not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {lr!r}")
    anneal = cfg.get("anneal") or {}
    _choice(anneal.get("kind", "none"), "anneal.kind", SCHEDULE_KINDS)
    if model.get("kind", "flow") == "flow":
        _positive_int(cfg, "model.latent_dim")
        _choice(prior.get("time_flow"), "prior.time_flow", TIME_FLOWS)
        _choice(prior.get("hidden_flow"), "prior.hidden_flow", HIDDEN_FLOWS)
        pinned = prior.get("transform")
        if pinned is not None:
            _choice(pinned, "prior.transform", sorted(TRANSFORMS))
        else:
            _choice((cfg.get("transform") or {}).get("name"), "transform.name", sorted(TRANSFORMS))
        _positive_int(cfg, "prior.num_flow_layers")
        _positive_int(cfg, "prior.flow_hidden")
        if prior.get("hidden_flow") == "scf" and model.get("latent_dim", 50) < 2:
            raise ConfigError(
                "model.latent_dim must be >= 2 for a coupling (scf) hidden flow: the split needs "
                f"two halves, got {model.get('latent_dim')}"
            )
        dropout = prior.get("dropout", 0.0)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"prior.dropout must lie in [0, 1), got {dropout}")
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("flows"):
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        _choice(compile_cfg.get("backend", "inductor"), "compile.backend", backends)
