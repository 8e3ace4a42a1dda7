"""Multi-process training, without GPUs or a cluster.

* DDP on 2 CPU processes (gloo), Lightning's ``ddp`` launched from the CLI: the evaluation sums
  are reduced once (the NLL equals a single-process evaluation of the same checkpoint), one
  logger run, one checkpoint writer.
* Slurm's settings and the environment Lightning reads from it (the real scheduler, end to end:
  tests/test_slurm.py).
* submitit_local for sweeps.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from latentflow.assembly import evaluate_best
from latentflow.config_checks import ConfigError, check_cluster
from latentflow.data.batching import BucketBatchSampler
from latentflow.lightning.distributed import ddp_strategy
from latentflow.loading import datamodule_from_checkpoint
from latentflow.run import CONF_DIR, load_module

from .helpers import compose_config
from .scale_helpers import (
    RESUMABLE,
    run_cli,
    subprocess_env,
    synthetic_batch,
    tiny_module,
)

DDP_CPU = ["trainer=ddp_cpu", "logger=csv"]


@pytest.fixture(scope="module")
def ddp_run(real_data_root, tmp_path_factory) -> Path:
    """A 2-process DDP run (Lightning's popen ``ddp``, gloo) of RESUMABLE, uninterrupted."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    args = [*RESUMABLE, *DDP_CPU, "trainer.strategy.start_method=popen", f"hydra.run.dir={run}"]
    proc = run_cli(args, subprocess_env(real_data_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def single_process_eval(ckpt: str) -> tuple[dict[str, float], object]:
    module = load_module(ckpt)
    datamodule = datamodule_from_checkpoint(module, {})
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return evaluate_best(trainer, module, datamodule, None, 0, ["val"])["val"], datamodule


# -- DDP ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_eval_equals_single_process_and_one_writer(ddp_run):
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    ddp_val = metrics["val"]
    single, datamodule = single_process_eval(metrics["best_checkpoint"])
    # Sums of log-likelihoods and token counts over both ranks, reduced once.
    assert ddp_val["num_sequences"] == len(datamodule.val_dataset) == 24
    assert ddp_val["num_tokens"] == int(np.sum(datamodule.val_dataset.lengths))
    assert ddp_val.keys() == single.keys()
    for key, value in single.items():
        assert ddp_val[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # Training was sharded: 5 batches per epoch -> 3 per rank (padded), 3 epochs.
    assert metrics["global_step"] == 9 and metrics["epochs"] == 3
    # Two processes ran (rank 1 was launched by Lightning and logged through Hydra) ...
    rank1_log = (ddp_run / "train_ddp_process_1.log").read_text()
    assert "model: LatentFlowModel" in rank1_log and "metrics:" not in rank1_log
    # ... but one logger run and one checkpoint writer.
    assert [p.name for p in (ddp_run / "csv").iterdir()] == ["version_0"]
    rows = (ddp_run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val_rows = [r for r in rows[1:] if r.split(",")[header.index("val/nll")]]
    assert len(val_rows) == 4  # once per epoch and once for the best checkpoint, not per rank
    names = sorted(p.name for p in (ddp_run / "checkpoints").iterdir())
    assert len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("best-"), names


def test_spawned_workers_own_their_tensors():
    """ddp_spawn hands the module over in shared memory; setup() gives each process a copy,
    else every rank would step the same parameters (one update per rank)."""
    module = tiny_module()
    module.sums["val_tokens"].update(torch.tensor(5.0, dtype=torch.float64))
    module.share_memory()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert all(p.is_shared() for p in module.parameters())
    module.setup("fit")
    assert not any(t.is_shared() for t in [*module.parameters(), *module.buffers()])
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert float(module.sums["val_tokens"].sum_value) == 0.0  # reset


def test_eval_noise_is_keyed_by_the_batch_not_by_order_or_history():
    """The importance samples of a batch do not depend on which rank or in which order it is
    evaluated, and evaluation leaves the global random stream alone."""
    module = tiny_module().eval()
    a, b = synthetic_batch([5, 3], 0), synthetic_batch([4, 4, 2], 2)

    def sums(batches):
        for batch in batches:
            module._eval_step(batch, "val")
        out = {k: float(m.compute()) for k, m in module.sums.items() if k.startswith("val_")}
        for m in module.sums.values():
            m.reset()
        return out

    torch.manual_seed(123)
    state = torch.get_rng_state()
    with torch.no_grad():
        forward = sums([a, b])
        assert torch.equal(torch.get_rng_state(), state)
        torch.rand(7)  # another history
        backward = sums([b, a])
        only_b = sums([b])
        only_a = sums([a])
    assert forward == backward
    assert forward["val_log_px"] == only_a["val_log_px"] + only_b["val_log_px"]


@pytest.mark.parametrize("n,batch_size,world", [(3, 5, 2), (24, 5, 2), (5, 2, 4), (1, 5, 2)])
def test_eval_sampler_shards_without_dropping_or_duplicating(n, batch_size, world):
    lengths = list(range(1, n + 1))
    ranks = [
        list(
            BucketBatchSampler(
                lengths, batch_size=batch_size, shuffle=False, num_replicas=world, rank=r
            )
        )
        for r in range(world)
    ]
    seen = sorted(i for batches in ranks for b in batches for i in b)
    assert seen == list(range(n))
    # Every rank has a batch when there are enough sequences: a rank without one would skip
    # the epoch-end reduction the others wait in.
    assert all(ranks[r] for r in range(min(world, n)))
    counts = [len(batches) for batches in ranks]
    assert max(counts) - min(counts) <= 1


def test_ddp_configs_build_a_ddp_strategy_without_buffer_sync(tmp_path, monkeypatch):
    for name, start in [("ddp", "popen"), ("ddp_cpu", "spawn")]:
        cfg = compose_config("train", [f"trainer={name}"], tmp_path)
        from hydra.utils import instantiate

        strategy = instantiate(cfg.trainer.strategy)
        assert strategy._start_method == start
        assert False in strategy._ddp_kwargs.values()  # forward_sync_buffers / broadcast_buffers
        assert set(strategy._ddp_kwargs) & {"forward_sync_buffers", "broadcast_buffers"}
    # Ranks that Slurm already started are never spawned again.
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert ddp_strategy("spawn")._start_method == "popen"


def test_slurm_tasks_per_node_must_match_devices(tmp_path, monkeypatch):
    cfg = compose_config("train", ["trainer=ddp", "trainer.devices=4"], tmp_path)
    for key, value in {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    with pytest.raises(ConfigError, match=r"trainer.devices=4 .* 2 tasks per node"):
        check_cluster(cfg)
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation: not detected
    check_cluster(cfg)


def test_under_slurm_lightnings_own_requeue_is_off(monkeypatch):
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from latentflow.assembly import build_plugins
    from latentflow.lightning.checkpoint_io import AtomicCheckpointIO

    assert [type(p) for p in build_plugins()] == [AtomicCheckpointIO]
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    io, env = build_plugins()
    assert isinstance(env, SLURMEnvironment) and not env.auto_requeue


def test_slurm_launcher_config_ties_tasks_and_gpus_to_the_trainer():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout > 0


@pytest.mark.slow
def test_submitit_local_sweep_returns_each_jobs_metric(real_data_root, tmp_path):
    returns = tmp_path / "returns"
    args = [
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "+hydra.callbacks.record._target_=tests.scale_helpers.RecordReturn",
        f"+hydra.callbacks.record.dir={returns}",
        "experiment=jsb/af_af",
        "debug=tiny",
        "runtime.threads=1",
        "trainer.enable_progress_bar=false",
        "test=false",
        "transform=affine,nlsq",
    ]
    proc = run_cli(args, subprocess_env(real_data_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for num, transform in enumerate(["affine", "nlsq"]):
        record = json.loads((returns / f"{num}.json").read_text())
        metrics = json.loads((tmp_path / "sweep" / str(num) / "metrics.json").read_text())
        assert f"transform={transform}" in record["overrides"]
        assert record["status"] == "COMPLETED"
        assert record["value"] == metrics["val"]["nll"] and np.isfinite(record["value"])
    jobs = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # two local jobs (processes)


def test_preemption_signal_is_the_one_submitit_handles():
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmJobEnvironment

    callbacks = OmegaConf.load(Path(CONF_DIR) / "callbacks" / "default.yaml")
    assert getattr(signal, callbacks.preemption.signal) == SlurmJobEnvironment._usr_sig()
