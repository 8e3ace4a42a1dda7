"""Opening a checkpoint runs no code its author chose.

Two doors, both shut: the pickle (a ``__reduce__`` payload runs at ``torch.load`` unless
``weights_only=True``) and the component nodes (a checkpoint names ``_target_``s that are called
when the model is rebuilt). ``tests/data/user_parts_v0.1.ckpt`` is a checkpoint written by
latentflow 0.1 before these checks (a ``debug=tiny`` JSB run with the user parts of
``tests/user_components.py``): it still loads, its user parts built once the user trusts them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from latentflow.components import ComponentError, check_trusted, instantiate
from latentflow.config_checks import ConfigError
from latentflow.lightning.checkpoint_io import load_checkpoint_file
from latentflow.run import load_module

from .helpers import run_module

REPO = Path(__file__).resolve().parents[1]
OLD_CKPT = Path(__file__).resolve().parent / "data" / "user_parts_v0.1.ckpt"


class Payload:
    """Pickles as a call of ``os.system(command)``: what an attacker plants in a checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def poisoned(tmp_path: Path, marker: Path, name: str = "evil.ckpt") -> Path:
    """A real latentflow checkpoint with a payload that creates ``marker`` when unpickled."""
    ckpt = torch.load(OLD_CKPT, weights_only=True)
    ckpt["callbacks"]["extra"] = Payload(f"touch {marker}")
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def with_target(tmp_path: Path, key: str, node: dict) -> Path:
    """The old checkpoint with the component at dotted ``key`` replaced by ``node``."""
    ckpt = torch.load(OLD_CKPT, weights_only=True)
    parent = ckpt["hyper_parameters"]["components"]
    *path, last = key.split(".")
    for part in path:
        parent = parent[part]
    parent[last] = node
    out = tmp_path / "crafted.ckpt"
    torch.save(ckpt, out)
    return out


def test_the_payload_really_runs_without_the_safe_loader(tmp_path):
    """The attack is real (so the tests below can fail): a plain unpickle runs it."""
    marker = tmp_path / "MARKER"
    path = poisoned(tmp_path, marker)
    torch.load(path, weights_only=False)  # the unsafe call, here only to show the attack works
    assert marker.exists()


def test_the_safe_loader_refuses_the_payload_naming_the_global(tmp_path):
    marker = tmp_path / "MARKER"
    path = poisoned(tmp_path, marker)
    with pytest.raises(ValueError, match=r"asks to run code.*posix\.system.*refused"):
        load_checkpoint_file(path)
    with pytest.raises(ConfigError, match=r"ckpt_path: .*posix\.system"):
        load_module(path)
    assert not marker.exists()


def test_a_checkpoint_of_latentflow_0_1_loads_with_its_user_parts_trusted():
    with pytest.raises(ComponentError) as err:
        load_module(OLD_CKPT)
    message = str(err.value)
    assert "tests.user_components" in message and "trust_components=[tests]" in message
    assert "\n" not in message
    module = load_module(OLD_CKPT, trust_components=["tests"])
    assert type(module.net.prior.flow).__name__ == "AlternatingFlow"
    out = module.net.sample(num_samples=2, generator=torch.Generator().manual_seed(0))
    assert out["x"].shape[0] == 2


@pytest.mark.parametrize(
    "node",
    [
        {"_target_": "os.system", "command": "touch {marker}"},
        {"_target_": "subprocess.run", "args": ["touch", "{marker}"]},
        # a dotted path through a latentflow module that imported os: not latentflow's code
        {"_target_": "latentflow.rundir.os.system", "command": "touch {marker}"},
    ],
    ids=["os.system", "subprocess.run", "through-latentflow"],
)
@pytest.mark.parametrize("trust", [[], ["tests"]])
def test_a_checkpoint_naming_foreign_code_is_refused_before_anything_runs(tmp_path, node, trust):
    marker = tmp_path / "MARKER"
    node = {
        k: (
            v.format(marker=marker) if isinstance(v, str) else [a.format(marker=marker) for a in v]
        )
        if k != "_target_"
        else v
        for k, v in node.items()
    }
    path = with_target(tmp_path, "prior.flow.transform", node)
    with pytest.raises(ComponentError, match=r"prior\.flow(\.transform)?\._target_: .*refused"):
        load_module(path, trust_components=trust)
    assert not marker.exists()


def test_trusting_a_prefix_needs_the_whole_module_name():
    node = {"model": {"_target_": "testsuite_evil.Model"}}
    with pytest.raises(ComponentError, match="testsuite_evil"):
        check_trusted(node, "", ["tests"])
    check_trusted({"model": {"_target_": "latentflow.models.LatentFlowModel"}}, "", [])


def test_a_role_target_that_is_not_a_class_is_refused_unrun(tmp_path):
    """In a user's own config too: os.system is not a ScalarTransform, so it is never called."""
    marker = tmp_path / "MARKER"
    node = {"_target_": "os.system", "command": f"touch {marker}"}
    with pytest.raises(ComponentError, match=r"prior\.flow\.transform\._target_: .* not a class"):
        instantiate(node, "prior.flow.transform", partial=False)
    node = {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]}
    with pytest.raises(ComponentError, match="ScalarTransform protocol.*missing"):
        instantiate(node, "prior.flow.transform", partial=False)
    assert not marker.exists()


def cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module(module, *args, cwd=cwd, env={"PYTHONPATH": str(REPO)}, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["evaluate", "sample", "plot", "train", "train-auto"])
def test_every_tool_refuses_a_poisoned_checkpoint_in_one_line(tool, tmp_path):
    marker = tmp_path / "MARKER"
    evil = poisoned(tmp_path, marker)
    out = f"hydra.run.dir={tmp_path / 'out'}"
    if tool == "evaluate":
        argv = ["latentflow.evaluate", f"ckpt_path={evil}", out]
    elif tool == "sample":
        argv = ["latentflow.sample", f"ckpt_path={evil}", out]
    elif tool == "plot":
        argv = ["latentflow.plot_cli", "prior", str(evil), "-o", str(tmp_path / "p.png")]
    else:
        run = tmp_path / "run"
        if tool == "train-auto":  # planted as a run directory's last.ckpt
            poisoned(run / "checkpoints", marker, "last.ckpt")
            ckpt = "ckpt_path=auto"
        else:
            ckpt = f"ckpt_path={evil}"
        argv = ["latentflow.train", "experiment=cpu/jsb/af_af", "debug=tiny", ckpt]
        argv += [f"hydra.run.dir={run}"]
    done = cli(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "posix.system" in errors[0], done.stderr[-2000:]
    assert not marker.exists()


def test_a_latentflow_function_hidden_in_a_nested_argument_is_refused(tmp_path):
    """Only latentflow's classes are parts: its functions (here one that writes a file) are not
    callable from a checkpoint, wherever the node sits."""
    marker = tmp_path / "MARKER"
    node = {
        "_target_": "latentflow.lightning.checkpoint_io.atomic_torch_save",
        "obj": 1,
        "path": str(marker),
    }
    path = with_target(tmp_path, "model.embed_dim", node)
    with pytest.raises(ComponentError, match=r"model.embed_dim._target_: .*refused"):
        load_module(path, trust_components=["tests"])
    assert not marker.exists()


def test_lightnings_load_from_checkpoint_is_the_safe_loader():
    from latentflow.lightning.module import SequenceLitModule

    with pytest.raises(ComponentError, match="trust_components=\\[tests\\]"):
        SequenceLitModule.load_from_checkpoint(OLD_CKPT)
    module = SequenceLitModule.load_from_checkpoint(OLD_CKPT, trust_components=["tests"])
    assert type(module.net.prior.flow).__name__ == "AlternatingFlow"
