"""Opening a checkpoint: the LightningModule rebuilt from its saved hyperparameters (no YAML,
no code the checkpoint names), a check of its weights, and the datamodule it was trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentflow.assembly import build_datamodule
from latentflow.components import ComponentError
from latentflow.config_checks import ConfigError
from latentflow.data.download import DataError


def load_module(
    ckpt_path: str | Path, map_location: str = "cpu", trust_components: Any = ()
) -> Any:
    """The LightningModule stored in a checkpoint, rebuilt from its saved hyperparameters
    (no YAML); a file that is not a readable latentflow checkpoint is one ConfigError.

    Opening it runs no code the checkpoint names: it is unpickled with ``weights_only=True``
    and its component targets are built only when they are latentflow's (or torch's
    optimizers) or under a module prefix in ``trust_components`` (e.g. ``["my_pkg"]``)."""
    from latentflow.components import check_trusted
    from latentflow.lightning.module import SequenceLitModule
    from latentflow.rundir import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    hparams = ckpt["hyper_parameters"]
    trusted = [str(t) for t in (trust_components or [])]
    for key in ("components", "data_config"):
        check_trusted(hparams.get(key), "" if key == "components" else "data", trusted)
    try:
        module = SequenceLitModule(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
        module.on_load_checkpoint(ckpt)
    except ComponentError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        detail = str(err).splitlines()[0][:200]
        raise ConfigError(
            f"ckpt_path: {ckpt_path} does not fit its own model ({detail})"
        ) from None
    return module.to(map_location)


def check_finite_weights(module: Any, ckpt_path: Any) -> None:
    """A checkpoint whose weights hold NaN or inf (a diverged run saved as it was) is one line:
    evaluating it would print ``nll: NaN``, sampling from it garbage or a traceback."""
    bad = [n for n, p in module.named_parameters() if not p.isfinite().all()]  # not p(T): -inf
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ConfigError(
            f"ckpt_path: {ckpt_path} holds non-finite weights ({', '.join(bad[:3])}{more}): the "
            "run that wrote it diverged; use an earlier checkpoint (best-*.ckpt)"
        )


def datamodule_from_checkpoint(module: Any, overrides: dict[str, Any]) -> Any:
    """The datamodule the model was trained on, with loader/root settings overridden."""
    data_cfg = dict(module.hparams.get("data_config") or {})
    if not data_cfg:
        raise ConfigError("ckpt_path: the checkpoint stores no data config (data_config)")
    import inspect

    from latentflow.components import locate

    takes = inspect.signature(locate(data_cfg.get("_target_"), "data")).parameters
    # loader and root settings, where this datamodule has them (own data has no data root)
    data_cfg.update({k: v for k, v in overrides.items() if v is not None and k in takes})
    datamodule = build_datamodule(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("validate")
    vocab = module.hparams.get("vocab")
    if vocab is not None and list(datamodule.vocab.symbols) != list(vocab):
        raise DataError("the data's vocabulary differs from the one stored in the checkpoint")
    return datamodule
