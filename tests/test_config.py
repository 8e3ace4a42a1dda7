"""Every config composes and instantiates; start-up validation names the bad key."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest

from latentflow.config_checks import ConfigError, validate_train_config
from latentflow.lightning.anneal import KLSchedule
from latentflow.models.factory import build_model
from latentflow.train import CONF_DIR, transform_name

from .helpers import compose_config

EXPERIMENTS = sorted(
    str(p.relative_to(Path(CONF_DIR) / "experiment").with_suffix(""))
    for p in (Path(CONF_DIR) / "experiment").rglob("*.yaml")
    if not p.name.startswith("_")  # parts shared by the recipes of a folder, not rows
)


def test_there_is_a_recipe_for_every_paper_row():
    expected = {
        f"ptb/{n}"
        for n in (
            "lstm",
            "af_only",
            "af_af",
            "af_scf",
            "iaf_scf",
            "ablation_no_nlsq",
            "ablation_no_af_hidden",
            "ablation_no_af_hidden_no_nlsq",
        )
    }
    for ds in ("nottingham", "piano_midi", "muse_data", "jsb"):
        expected |= {f"{ds}/{n}" for n in ("lstm", "af_af", "af_scf", "iaf_scf")}
    assert expected <= set(EXPERIMENTS)


def test_cpu_ptb_rows_share_one_budget(tmp_path):
    """The PTB rows at CPU width compare models on the same budget (docs/results.md): they take
    it from cpu/ptb/_budget.yaml and _flow.yaml, and differ only where the model does."""
    shared = ("data", "trainer", "eval", "runtime")
    cfgs = {
        row: compose_config("train", [f"experiment=cpu/ptb/{row}"], tmp_path)
        for row in ("lstm", "af_af", "iaf_scf", "ablation_no_nlsq")
    }
    assert cfgs["af_af"].trainer.max_time == "00:00:08:00"
    for row, cfg in cfgs.items():
        for key in shared:
            a, b = dict(cfg[key]), dict(cfgs["af_af"][key])
            if row == "lstm" and key == "trainer":  # validates 10x less often: 10x more steps
                assert a.pop("val_check_interval") == 10 * b.pop("val_check_interval")
            assert a == b, (row, key)
        assert cfg.experiment_name == f"cpu/ptb/{row}" and cfg.seed == 0
    for row in ("af_af", "iaf_scf", "ablation_no_nlsq"):
        assert cfgs[row].anneal == cfgs["af_af"].anneal
        assert cfgs[row].callbacks == cfgs["af_af"].callbacks
    assert cfgs["iaf_scf"].prior.time_flow == "iaf"
    assert cfgs["ablation_no_nlsq"].prior != cfgs["af_af"].prior


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    validate_train_config(cfg)
    datamodule = hydra.utils.instantiate(cfg.data, root=str(tmp_path))  # no data read
    assert datamodule.batch_size == cfg.data.batch_size
    kind = "text" if experiment.startswith("ptb") else "music"
    net = build_model(
        dict(cfg.model),
        dict(cfg.prior),
        cfg.transform.name,
        {"kind": kind, "num_features": 51 if kind == "text" else 88, "max_length": 288},
    )
    n = sum(p.numel() for p in net.parameters())
    assert n > 1e5
    assert cfg.paper, "every paper row carries the paper's number"


def test_ablation_priors_select_the_affine_transform(tmp_path):
    cfg = compose_config("train", ["experiment=ptb/ablation_no_nlsq"], tmp_path)
    assert transform_name(cfg) == "affine" and cfg.prior.hidden_flow == "af"
    cfg = compose_config("train", ["experiment=ptb/ablation_no_af_hidden_no_nlsq"], tmp_path)
    assert transform_name(cfg) == "affine" and cfg.prior.hidden_flow == "elementwise"
    cfg = compose_config("train", ["experiment=ptb/ablation_no_af_hidden"], tmp_path)
    assert transform_name(cfg) == "nlsq" and cfg.prior.hidden_flow == "elementwise"
    cfg = compose_config("train", ["experiment=ptb/af_af", "transform=affine"], tmp_path)
    assert transform_name(cfg) == "affine"
    net = build_model(
        dict(cfg.model),
        dict(cfg.prior),
        transform_name(cfg),
        {"kind": "text", "num_features": 51, "max_length": 20},
    )
    assert type(net.prior.flow.layers[0].transform).__name__ == "Affine"


@pytest.mark.parametrize(
    "override,key",
    [
        ("prior.time_flow=lstm", "prior.time_flow"),
        ("prior.hidden_flow=maf", "prior.hidden_flow"),
        ("transform.name=spline", "transform.name"),
        ("eval.num_samples=0", "eval.num_samples"),
        ("train.elbo_samples=0", "train.elbo_samples"),
        ("model.latent_dim=1", "model.latent_dim"),
        ("model.kind=gru", "model.kind"),
        ("anneal.kind=cyclic", "anneal.kind"),
        ("train.lr=-1", "train.lr"),
    ],
)
def test_startup_validation_names_the_key(override, key, tmp_path):
    cfg = compose_config("train", ["experiment=jsb/af_scf", override], tmp_path)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_train_config(cfg)


@pytest.mark.parametrize(
    "schedule,epoch,fraction,step,expected",
    [
        (KLSchedule("epoch", 4, 10), 0, 0.0, 0, 0.0),
        (KLSchedule("epoch", 4, 10), 3, 0.99, 0, 0.0),
        (KLSchedule("epoch", 4, 10), 4, 0.0, 0, 0.0),
        (KLSchedule("epoch", 4, 10), 4, 0.5, 0, 0.05),
        (KLSchedule("epoch", 4, 10), 9, 0.0, 0, 0.5),
        (KLSchedule("epoch", 4, 10), 14, 0.0, 0, 1.0),
        (KLSchedule("epoch", 20, 15), 50, 0.0, 0, 1.0),
        (KLSchedule("epoch", 4, 10, floor=1e-5), 1, 0.0, 0, 1e-5),
        (KLSchedule("step", 100, 400), 7, 0.0, 300, 0.5),
        (KLSchedule("none"), 0, 0.0, 0, 1.0),
        (KLSchedule("epoch", 2, 0), 2, 0.0, 0, 1.0),
    ],
)
def test_kl_schedule_values(schedule, epoch, fraction, step, expected):
    assert schedule.weight(epoch, fraction, step) == pytest.approx(expected)
