"""Every config composes and instantiates; start-up validation names the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from latentflow import recipes
from latentflow.components import ComponentError, instantiate
from latentflow.config_checks import ConfigError, check_components, validate_train_config
from latentflow.lightning.anneal import KLSchedule
from latentflow.models.build import build_net
from latentflow.run import CONF_DIR, components_of

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
    assert cfgs["iaf_scf"].prior._target_.endswith("IAFTimePrior")
    assert cfgs["ablation_no_nlsq"].prior != cfgs["af_af"].prior
    assert cfgs["af_af"].lr_schedule.start_step == 200


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    validate_train_config(cfg)
    check_components(cfg)
    datamodule = instantiate({**dict(cfg.data), "root": str(tmp_path)}, "data")  # no data read
    assert datamodule.batch_size == cfg.data.batch_size
    kind = "text" if experiment.startswith("ptb") else "music"
    components = components_of(cfg)
    assert (components["prior"] is None) == experiment.endswith("lstm"), "LSTM rows: no prior"
    net = build_net(
        components,
        {"kind": kind, "num_features": 51 if kind == "text" else 88, "max_length": 288},
    )
    n = sum(p.numel() for p in net.parameters())
    assert n > 1e5
    successor = experiment.split("/")[-1] in recipes.SUCCESSORS  # a later paper's row
    assert bool(cfg.paper) != successor, "every paper row carries the paper's number"


def test_lstm_rows_compose_no_prior_even_with_size_presets(tmp_path):
    cfg = compose_config("train", ["experiment=ptb/lstm"], tmp_path)
    assert "prior" not in cfg
    cfg = compose_config("train", ["experiment=cpu/jsb/lstm", "debug=tiny"], tmp_path)
    assert components_of(cfg)["prior"] is None  # only size presets: dropped
    check_components(cfg)


def test_data_roots_follow_paths_data_dir(tmp_path):
    for data in ("ptb", "jsb", "muse_data"):
        cfg = compose_config("train", [f"data={data}", f"paths.data_dir={tmp_path}"], tmp_path)
        assert cfg.data.root == str(tmp_path)


def test_ablation_priors_select_the_affine_transform(tmp_path):
    def parts(*overrides):
        cfg = compose_config("train", list(overrides), tmp_path)
        return cfg.prior.flow._target_.rsplit(".")[-1], cfg.prior.flow.transform._target_

    assert parts("experiment=ptb/ablation_no_nlsq") == (
        "AutoregressiveFlow",
        "latentflow.flows.Affine",
    )
    assert parts("experiment=ptb/ablation_no_af_hidden_no_nlsq") == (
        "ElementwiseFlow",
        "latentflow.flows.Affine",
    )
    assert parts("experiment=ptb/ablation_no_af_hidden") == (
        "ElementwiseFlow",
        "latentflow.flows.NLSq",
    )
    assert parts("experiment=ptb/af_scf") == ("CouplingFlow", "latentflow.flows.NLSq")
    # The command line wins over what a prior selects.
    assert parts("prior=af_scf", "hidden_flow=af") == (
        "AutoregressiveFlow",
        "latentflow.flows.NLSq",
    )
    cfg = compose_config("train", ["experiment=ptb/af_af", "transform=affine"], tmp_path)
    net = build_net(components_of(cfg), {"kind": "text", "num_features": 51, "max_length": 20})
    assert type(net.prior.flow.layers[0].transform).__name__ == "Affine"


def startup_checks(cfg) -> None:
    validate_train_config(cfg)
    check_components(cfg)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["prior.flow._target_=latentflow.flows.MAF"], "prior.flow._target_: cannot import"),
        (["prior.flow.transform._target_=my_pkg.MyTransform"], "cannot import my_pkg"),
        (["+prior.flow.num_layer=3"], "prior.flow: .* takes no argument 'num_layer'"),
        (["prior.flow.num_layers=0"], "prior.flow .*num_layers must be >= 1"),
        (["prior.latent_dim=1"], "prior.flow .*must be >= 2"),
        (["prior.conditioner.dropout=1.5"], "prior.conditioner .*dropout"),
        (["~prior.conditioner"], "prior .*conditioner"),
        (
            ["prior._target_=latentflow.flows.NLSq"],
            "prior: .*NLSq.* not meet the SequencePrior",
        ),
        (["prior.flow._target_=latentflow.models.LSTMConditioner"], "prior.flow"),
        (["model=lstm", "prior=af_af"], "prior: LSTMLanguageModel takes no prior"),
        (["~prior"], "prior: LatentFlowModel needs a prior"),
        (["eval.num_samples=0"], "eval.num_samples"),
        (["train.elbo_samples=0"], "train.elbo_samples"),
        (["anneal.kind=cyclic"], "anneal.kind"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["optimizer.lr=inf"], "optimizer.lr"),
        (["optimizer._target_=torch.optim.Adamm"], "optimizer._target_: cannot import"),
        (["lr_schedule=plateau", "lr_schedule.factor=2"], "lr_schedule .*factor"),
        (["lr_schedule=plateau", "lr_schedule._target_=torch.nn.Linear"], "lr_schedule"),
    ],
)
def test_startup_validation_names_the_key(overrides, key, tmp_path):
    cfg = compose_config("train", ["experiment=jsb/af_scf", *overrides], tmp_path)
    with pytest.raises((ConfigError, ComponentError), match=key):
        startup_checks(cfg)


def test_a_torch_lr_scheduler_is_accepted(tmp_path):
    cfg = compose_config("train", ["debug=tiny"], tmp_path)
    with open_dict(cfg):
        cfg.lr_schedule = {
            "_target_": "torch.optim.lr_scheduler.StepLR",
            "_partial_": True,
            "step_size": 2,
        }
    startup_checks(cfg)


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


def test_docs_config_reference_is_current():
    """docs/config.md lists every key of every group: regenerated, it must not change."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "config_reference.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
