"""A user's own parts (tests/user_components.py, not in the package) are chosen from the command
line, trained, then evaluated and sampled from the checkpoint alone in fresh processes; parts
that do not meet their protocol are refused before any work, in one line naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentflow.config_checks import check_components
from latentflow.flows import AutoregressiveLayer
from latentflow.lightning.checkpoint_io import load_checkpoint_file

from .helpers import compose_config
from .user_components import AlternatingFlow, SinhArcsinh

REPO = Path(__file__).resolve().parents[1]
USER_CONF = Path(__file__).resolve().parent / "user_conf"


def cli(tool: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"latentflow.{tool}", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_user_transform_meets_its_own_math(float64):
    """The user's transform is a real one: its inverse and log-det check out."""
    torch.manual_seed(0)
    t, x = SinhArcsinh(), 3 * torch.randn(50)
    params = 0.5 * torch.randn(50, 4)
    y, ld = t(x, params)
    jac = torch.autograd.functional.jacobian(lambda v: t(v, params)[0], x)
    torch.testing.assert_close(ld, jac.diagonal().log())
    torch.testing.assert_close(t.solve(y, params), x)
    layer = AutoregressiveLayer(3, t, 2, 8, 1).double()
    u, ctx = torch.randn(4, 3), torch.randn(4, 2)
    x3, _ = layer.sample(u, ctx)
    torch.testing.assert_close(layer(x3, ctx)[0], u)
    flow = AlternatingFlow(4, 2, transform=SinhArcsinh, num_layers=1, hidden_features=4)
    assert [type(layer).__name__ for layer in flow.layers] == [
        "AutoregressiveLayer",
        "CouplingLayer",
    ]


@pytest.mark.slow
def test_user_parts_train_evaluate_and_sample_in_fresh_processes(real_data_root, tmp_path):
    env = {
        **os.environ,
        "LATENTFLOW_DATA": str(real_data_root),
        "PYTHONPATH": str(REPO),  # the user's module is importable, as their own package
        "OMP_NUM_THREADS": "1",
    }
    run = tmp_path / "run"
    common = ["debug=tiny", "runtime.threads=1", "trainer.enable_progress_bar=false"]
    train = cli(
        "train",
        "--config-dir",
        str(USER_CONF),
        "experiment=jsb/af_scf",
        "hidden_flow=alternating",
        "transform=sinh_arcsinh",
        *common,
        f"hydra.run.dir={run}",
        env=env,
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["prior"]["flow"]["_target_"] == "tests.user_components.AlternatingFlow"
    assert metrics["prior"]["flow"]["transform"]["_target_"] == "tests.user_components.SinhArcsinh"
    ckpt = run / "checkpoints" / "last.ckpt"
    stored = load_checkpoint_file(ckpt)
    assert "prior.flow.layers.1.net.0.weight" in {
        k.removeprefix("net.") for k in stored["state_dict"]
    }, "the checkpoint holds the user's flow (a coupling layer at index 1)"

    # A fresh process, no --config-dir, no YAML: the checkpoint rebuilds the user's parts once
    # the user says they trust their module (a checkpoint's targets are code that runs).
    evaluate = cli(
        "evaluate",
        f"ckpt_path={ckpt}",
        "trust_components=[tests]",  # the user's own module, named by its checkpoint
        "splits=[test]",
        "eval.num_samples=4",
        f"hydra.run.dir={tmp_path / 'eval'}",
        env=env,
        cwd=tmp_path,
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    test = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    assert test["nll"] == pytest.approx(metrics["test"]["nll"], rel=0.05)
    sample = cli(
        "sample",
        f"ckpt_path={ckpt}",
        "trust_components=[tests]",
        "num_samples=2",
        "length=8",
        f"hydra.run.dir={tmp_path / 'sample'}",
        env=env,
        cwd=tmp_path,
    )
    assert sample.returncode == 0, sample.stderr[-3000:]
    payload = json.loads((tmp_path / "sample" / "samples.json").read_text())
    assert payload["lengths"] == [8, 8] and len(payload["files"]) == 3


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["prior.flow.transform._target_=tests.user_components.AlternatingFlow"],
            "prior.flow.transform: .*AlternatingFlow.* takes no argument|prior.flow.transform",
        ),
        (["prior.flow.transform._target_=torch.nn.Identity"], "ScalarTransform protocol"),
        (["prior.conditioner._target_=torch.nn.Identity"], "TimeConditioner protocol"),
        (["prior.flow._target_=no_such_pkg.Flow"], "cannot import no_such_pkg.Flow"),
    ],
)
def test_parts_that_do_not_fit_are_refused_naming_the_key(overrides, message, tmp_path):
    cfg = compose_config("train", ["debug=tiny", *overrides], tmp_path)
    with pytest.raises(ValueError, match=message):
        check_components(cfg)


def test_a_users_config_folder_and_its_local_defaults(tmp_path):
    """--config-dir (here: compose(config_dir=...)) adds groups; local/default.yaml in it is
    read by every run (a cluster account, a data root)."""
    from latentflow.run import compose

    conf = tmp_path / "my_conf"
    (conf / "local").mkdir(parents=True)
    (conf / "local" / "default.yaml").write_text(
        f"# @package _global_\nseed: 7\npaths:\n  data_dir: {tmp_path}\n"
    )
    (conf / "transform").mkdir()
    (conf / "transform" / "sinh_arcsinh.yaml").write_text(
        (USER_CONF / "transform" / "sinh_arcsinh.yaml").read_text()
    )
    cfg = compose(["transform=sinh_arcsinh"], output_dir=tmp_path / "run", config_dir=conf)
    assert cfg.seed == 7 and cfg.data.root == str(tmp_path)
    assert cfg.prior.flow.transform._target_ == "tests.user_components.SinhArcsinh"
    assert compose([], output_dir=tmp_path / "run").seed == 0  # without the folder: defaults


def test_the_config_dir_rule_a_same_named_file_is_the_packages(tmp_path):
    """The rule the docs state once (Extending, "Your own config folder"): a user's folder adds
    options to the package's groups; for a name both have, the package's file is used, on the
    command line (--config-dir) and from Python (compose(config_dir=...)) alike."""
    from latentflow.run import compose

    conf = tmp_path / "my_conf"
    (conf / "transform").mkdir(parents=True)
    shadow = "# @package prior.flow.transform\n_target_: my_pkg.Shadow\n_partial_: true\n"
    (conf / "transform" / "nlsq.yaml").write_text(shadow)  # the package's name
    (conf / "transform" / "mine.yaml").write_text(shadow)  # a new name
    for name, expected in (("nlsq", "latentflow.flows.NLSq"), ("mine", "my_pkg.Shadow")):
        cfg = compose([f"transform={name}"], output_dir=tmp_path / "run", config_dir=conf)
        assert cfg.prior.flow.transform._target_ == expected
        out = subprocess.run(
            [sys.executable, "-m", "latentflow.train", "--config-dir", str(conf)]
            + [f"transform={name}", "--cfg", "job", "--package", "prior.flow.transform"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"_target_: {expected}" in out.stdout
