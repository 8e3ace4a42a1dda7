"""`make train` runs on jemalloc where it is installed (the fastest allocator measured, issue
20), on tuned glibc otherwise, and the run log names the allocator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from latentflow import runtime

ROOT = Path(__file__).resolve().parents[1]
JEMALLOC = Path(runtime.JEMALLOC)


def make_dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make")
    cmd = ["make", "-s", "-n", "-C", str(ROOT), "-o", ".venv/.installed", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_make_train_preloads_jemalloc_when_given_and_not_otherwise(tmp_path):
    fake = tmp_path / "libjemalloc.so.2"
    fake.touch()
    line = make_dry_run(f"JEMALLOC={fake}").splitlines()[-1]
    assert line.startswith(f"LD_PRELOAD={fake} MALLOC_CONF={runtime.JEMALLOC_CONF} ")
    assert "latentflow-train experiment=cpu/jsb/af_af" in line
    assert "LD_PRELOAD" not in make_dry_run("JEMALLOC=")


@pytest.mark.skipif(not JEMALLOC.exists(), reason="libjemalloc2 not installed")
def test_make_train_finds_the_installed_jemalloc():
    assert make_dry_run().splitlines()[-1].startswith(f"LD_PRELOAD={JEMALLOC} ")


def allocator_of_a_process(env: dict[str, str]) -> str:
    code = "from latentflow import runtime; runtime.apply_runtime(1); print(runtime.allocator())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


def test_the_allocator_is_named_as_it_is():
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    assert allocator_of_a_process(env) == "glibc (tuned)"
    assert allocator_of_a_process({**env, "LATENTFLOW_NO_MALLOC_TUNING": "1"}) == "glibc"
    if JEMALLOC.exists():  # CI installs it (.ci/run)
        assert allocator_of_a_process({**env, "LD_PRELOAD": str(JEMALLOC)}) == "jemalloc"


def bench_plan(**given):
    import argparse

    from .helpers import load_benchmark

    bench = load_benchmark("bench_train")
    args = dict(sizes=["cpu"], quick=False, batches="median,long", models=["af_af"],
                device="cpu", steps=1, no_eval=True, allocators=False, threads=1, root=None,
                precisions=["fp32", "bf16"], compile=False)  # fmt: skip
    return bench, bench.plan(argparse.Namespace(**{**args, **given}))


def test_the_training_benchmark_times_what_make_train_runs_on():
    """bench_train's main rows run on make train's allocator (jemalloc where installed, else
    tuned glibc), in every precision; the long AF/AF row also on the other two, fp32 only."""
    bench, rows = bench_plan()
    expected = "jemalloc" if JEMALLOC.exists() else "glibc-tuned"
    assert bench.MAKE_TRAIN_ALLOCATOR == expected
    main = [r for r in rows if r["allocator"] == expected]
    assert {(r["model"], r["batch_name"], r["precision"]) for r in main} == {
        (m, b, p) for m in ("lstm", "af_af") for b in ("median", "long") for p in ("fp32", "bf16")
    }
    others = [(r["allocator"], r["model"], r["batch_name"], r["precision"]) for r in rows]
    others = sorted(o for o in others if o[0] != expected)
    assert others == sorted(
        (a, "af_af", "long", "fp32")
        for a in ("glibc", "glibc-tuned", "jemalloc")
        if a != expected and (a != "jemalloc" or JEMALLOC.exists())
    )
    _, rows = bench_plan(allocator="glibc")  # --allocator glibc: the main rows on glibc
    assert {r["allocator"] for r in rows if r["model"] == "lstm"} == {"glibc"}


def test_the_versions_benchmark_times_each_checkouts_main_row_of_the_long_batch():
    """bench_versions times a checkout's own main row: the long AF/AF row, not one of the
    allocator rows that share its model, batch and precision (they come after it)."""
    from .helpers import load_benchmark

    versions = load_benchmark("bench_versions")
    plan = versions.rows_of(versions.HERE, 1, 1, "long", ["fp32"])
    expected = "jemalloc" if JEMALLOC.exists() else "glibc-tuned"
    assert plan[("af_af", "long", "fp32")]["allocator"] == expected
    assert {r["allocator"] for r in plan.values()} == {expected}


# Training steps of cpu/jsb/tarflowlm on batches of varying length; prints the resident set
# size (MB) after step 10 and after the last.
GROWTH = """
import sys, torch
from latentflow.configs import compose, components_of
from latentflow.models.build import build_net
torch.set_num_threads(1)
torch.manual_seed(0)
cfg = compose(["experiment=cpu/jsb/tarflowlm"])
net = build_net(components_of(cfg), {"kind": "music", "num_features": 88, "max_length": 180})
opt = torch.optim.Adam(net.parameters(), 1e-3)
g = torch.Generator().manual_seed(0)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
for step in range(int(sys.argv[1])):
    T = int(torch.randint(20, 129, (1,), generator=g))
    lengths = torch.randint(max(1, T - 30), T + 1, (5,), generator=g)
    lengths[0] = T
    x = (torch.rand(5, T, 88, generator=g) < 0.05).float()
    loss = -net.training_terms(x, lengths, 1, 1.0)["objective"].sum() / lengths.sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step == 10:
        print(rss())
print(rss())
"""


@pytest.mark.slow
@pytest.mark.skipif(not JEMALLOC.exists(), reason="libjemalloc2 not installed")
def test_training_on_jemalloc_as_we_run_it_does_not_grow_without_bound():
    # With no decay and jemalloc's default lg_extent_max_active_fit (6), this loop grew by ~20 MB
    # a step (+1,000 MB from step 10 to 60 here; a JSB run was killed out of memory at 19 GB).
    env = {**os.environ, "LD_PRELOAD": str(JEMALLOC), "MALLOC_CONF": runtime.JEMALLOC_CONF}
    out = subprocess.run(
        [sys.executable, "-c", GROWTH, "60"], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    after_10, after_60 = (float(v) for v in out.stdout.split())
    assert after_60 - after_10 < 150, f"{after_10:.0f} MB -> {after_60:.0f} MB in 50 steps"
