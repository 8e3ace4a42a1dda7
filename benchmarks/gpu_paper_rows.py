"""Paper rows on a GPU lent for a few minutes: as many runs as fit, side by side, in one archive.

    python3 -m benchmarks.gpu_paper_rows --prepare          # here, once: wheels + data in .gpu/
    PYTHONPATH=src python3 -m benchmarks.gpu_paper_rows --minutes 8 --out "$OUT"   # on the GPU

The GPU machine has Python 3.12, a CUDA torch, pytorch-lightning, torchmetrics, matplotlib and
scipy, but no hydra-core, omegaconf, antlr4 runtime or mido, and no network. ``--prepare``
downloads those as wheels for Python 3.12 into ``.gpu/wheels`` and copies the music datasets
into ``.gpu/data`` (``.gpu/`` is ignored by git: name it in the device tool's ``carry``). On the
GPU the script installs the wheels into ``.gpu/site`` (``pip --no-index --no-deps --target``),
puts ``src/`` on the children's path (no install, so the package's torch floor is not asked;
the script itself reads ``latentflow.recipes`` from ``src/``: ``PYTHONPATH=src``), records the
machine (``env.json``), proves a tiny run works on that torch, then trains the rows: JSB first,
then Nottingham, seed 0 of every row before seed 1, up to ``--parallel`` runs at once (small
batches leave a GPU mostly idle: runs side by side finish the set sooner), each in its own
directory under ``--runs`` with ``ckpt_path=auto`` (a second call on the same machine continues
them) and a time budget that ends it, best checkpoint evaluated, before ``--minutes`` is up.
What comes back is ``--out``: ``results.json`` (one row per run: epochs, why it stopped,
validation and test NLL at S = 50 in both conventions) and ``paper_rows.tar.gz`` (each run's
``metrics.json``, ``config.yaml``, ``timing.csv``, metrics CSV and log; no checkpoints).

A run cut by the budget is reported as such (``stop_reason: max_time``): its numbers are those
of its best checkpoint so far, not the paper's protocol; only ``max_epochs`` or
``early_stopping`` rows are finished. Rehearse on the CPU with a tiny config:

    python3 -m benchmarks.gpu_paper_rows --trainer cpu --minutes 2 --rows jsb/af_af \\
        --seeds 0 --extra debug=tiny --out /tmp/rehearsal
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from latentflow import recipes

REPO = Path(__file__).resolve().parents[1]
GPU_DIR = REPO / ".gpu"
# What the GPU machine lacks (its image has torch, Lightning, torchmetrics, numpy, matplotlib,
# scipy, tqdm, pyyaml, packaging): pinned to what this repository's CI installs.
WHEELS = ["hydra-core==1.3.8", "omegaconf==2.3.1", "mido==1.3.3"]
SDIST_WHEELS = ["antlr4-python3-runtime==4.9.3"]  # no wheel on PyPI: built here (pure Python)
DATASETS = ["jsb_chorales.npz", "nottingham.npz"]
# Table 3's recipes at the paper's sizes, most wanted first: JSB, then Nottingham; AF/AF, then
# IAF/SCF (the fast one) and AF/SCF, any other flow, the LSTM baseline last.
FIRST = ("af_af", "iaf_scf", "af_scf")


def most_wanted(recipe: recipes.Recipe) -> tuple:
    rank = FIRST.index(recipe.model) if recipe.model in FIRST else len(FIRST)
    return (recipe.prior is None, rank, recipe.model)


ROWS = [
    r.name
    for d in ("jsb", "nottingham")
    for r in sorted(recipes.recipes(d, "paper"), key=most_wanted)
]
# The validation protocol of the CPU paper runs: S = 10 every epoch, S = 50 for the final numbers.
RUN_ARGS = ["eval.val_num_samples=10", "trainer.enable_progress_bar=false"]
KEEP = ("metrics.json", "config.yaml", "timing.csv", "train.log", "failed.json")


def prepare(data_root: Path) -> None:
    """Here, with PyPI reachable: wheels for Python 3.12 and the datasets into .gpu/."""
    wheels = GPU_DIR / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platform = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "download", "--no-deps", *platform, "-d", wheels, *WHEELS], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, *SDIST_WHEELS], check=True)
    music = GPU_DIR / "data" / "music"
    music.mkdir(parents=True, exist_ok=True)
    for name in DATASETS:
        source = data_root / "music" / name
        if not source.is_file():
            raise SystemExit(f"gpu_paper_rows: error: no {source} (set --data-root)")
        shutil.copy2(source, music / name)
    size = sum(p.stat().st_size for p in GPU_DIR.rglob("*") if p.is_file()) / 2**20
    print(f"prepared {GPU_DIR} ({size:.1f} MiB): carry it with the device tool (carry=['.gpu'])")


def child_env(threads: int) -> dict[str, str]:
    """The children's environment: carried wheels (if any) and src/ first on the path."""
    paths = [str(REPO / "src")]
    wheels = sorted((GPU_DIR / "wheels").glob("*.whl"))
    try:
        import hydra  # noqa: F401

        have_hydra = True
    except ImportError:
        have_hydra = False
    if wheels and not have_hydra:
        site = GPU_DIR / "site"
        if not site.is_dir():
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
            cmd += ["--no-compile", "--target", str(site), *map(str, wheels)]
            subprocess.run(cmd, check=True)
        paths.insert(0, str(site))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if (GPU_DIR / "data" / "music").is_dir() and not os.environ.get("LATENTFLOW_DATA"):
        env["LATENTFLOW_DATA"] = str(GPU_DIR / "data")
    return env


def machine(env: dict[str, str]) -> dict:
    code = (
        "import json, sys, torch, pytorch_lightning as pl, hydra, omegaconf\n"
        "cuda = torch.cuda.is_available()\n"
        "print(json.dumps({'python': sys.version.split()[0], 'torch': torch.__version__,\n"
        "  'lightning': pl.__version__, 'hydra': hydra.__version__, 'cuda': cuda,\n"
        "  'device': torch.cuda.get_device_name() if cuda else 'cpu',\n"
        "  'cpus': __import__('os').cpu_count()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(
            f"gpu_paper_rows: error: incomplete environment: {out.stderr.strip().splitlines()[-1]}"
        )
    return json.loads(out.stdout)


def train_command(row: str, seed: int, run_dir: Path, trainer: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "latentflow.train",
        f"experiment={row}",
        f"seed={seed}",
        f"trainer={trainer}",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=auto",
        *RUN_ARGS,
        *extra,
    ]


def budget(seconds: float) -> str:
    """``trainer.max_time`` (DD:HH:MM:SS) for a run that may train ``seconds``."""
    s = max(int(seconds), 60)
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def smoke(trainer: str, env: dict[str, str], runs: Path) -> float:
    """A tiny run on this machine's torch: it must work before the real runs start."""
    start = time.time()
    cmd = train_command("jsb/af_af", 0, runs / "_smoke", trainer, ["debug=tiny", "overwrite=true"])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(f"gpu_paper_rows: error: the tiny run failed:\n{out.stderr[-3000:]}")
    return time.time() - start


def summary(run_dir: Path, row: str, seed: int, wall: float | None) -> dict:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        return {"row": row, "seed": seed, "finished": False, "stop_reason": "no metrics.json"}
    m = json.loads(metrics_path.read_text())
    pick = ("nll_paper_nats", "nll_nats_per_token", "nll_paper_nats_stderr")
    return {
        "row": row,
        "seed": seed,
        "finished": m.get("stop_reason") in ("max_epochs", "early_stopping"),
        "stop_reason": m.get("stop_reason"),
        "epochs": m.get("epochs"),
        "train_time_s": m.get("train_time_s"),
        "wall_s": wall,
        "paper": m.get("paper", {}).get("test_nll_nats"),
        "val": {k: m.get("val", {}).get(k) for k in pick},
        "test": {k: m.get("test", {}).get(k) for k in pick},
    }


def archive(runs: Path, out: Path) -> Path:
    """The small files of every run directory (no checkpoints) in one archive."""
    path = out / "paper_rows.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for run_dir in sorted(p for p in runs.iterdir() if p.is_dir() and p.name != "_smoke"):
            for name in KEEP:
                if (run_dir / name).is_file():
                    tar.add(run_dir / name, f"{run_dir.name}/{name}")
            for csv in sorted(run_dir.glob("csv/version_*/metrics.csv")):
                tar.add(csv, f"{run_dir.name}/{csv.parent.name}_metrics.csv")
    return path


def run(args: argparse.Namespace) -> None:
    deadline = time.time() + 60 * args.minutes
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    queue = [(row, seed) for seed in args.seeds for row in args.rows]
    threads = max(1, (os.cpu_count() or 1) // max(1, min(args.parallel, len(queue))))
    env = child_env(threads)
    info = machine(env)
    if args.trainer == "gpu" and not info["cuda"]:
        raise SystemExit("gpu_paper_rows: error: trainer=gpu but torch sees no CUDA device")
    info["smoke_run_s"] = smoke(args.trainer, env, runs)
    (out / "env.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    running: list[tuple[str, int, subprocess.Popen, float]] = []
    done: list[dict] = []
    while queue or running:
        for item in list(running):
            row, seed, proc, started = item
            if proc.poll() is not None:
                running.remove(item)
                done.append(summary(runs / f"{row.replace('/', '_')}_s{seed}", row, seed,
                                    time.time() - started))  # fmt: skip
                print(f"{time.strftime('%H:%M:%S')} {row} s{seed}: exit {proc.returncode}")
        left = deadline - time.time() - args.eval_margin
        while queue and len(running) < args.parallel and left > 60 * args.min_minutes:
            row, seed = queue.pop(0)
            run_dir = runs / f"{row.replace('/', '_')}_s{seed}"
            cmd = train_command(row, seed, run_dir, args.trainer, args.extra)
            cmd.append(f"trainer.max_time={budget(left)}")
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / "stdout.log", "a")  # noqa: SIM115 (the child holds it)
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((row, seed, proc, time.time()))
            print(f"{time.strftime('%H:%M:%S')} {row} s{seed}: started ({budget(left)})")
        if queue and not running and left <= 60 * args.min_minutes:
            break  # no time for another run
        if time.time() > deadline + 120:  # a run that ignores its budget: stop it (it saves)
            for _, _, proc, _ in running:
                proc.terminate()
        time.sleep(2)
    skipped = [{"row": r, "seed": s, "finished": False, "stop_reason": "not started"}
               for r, s in queue]  # fmt: skip
    results = {"machine": info, "runs": done + skipped}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'results.json'} and {archive(runs, out)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="fetch wheels and data into .gpu/")
    parser.add_argument(
        "--data-root", type=Path, default=Path(os.environ.get("LATENTFLOW_DATA", "data"))
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="wall budget of the whole call")
    parser.add_argument("--rows", nargs="+", default=ROWS, help="experiments (e.g. jsb/af_af)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=12, help="runs at once")
    parser.add_argument("--trainer", default="gpu", help="gpu, or cpu for a rehearsal")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--runs", default=str(GPU_DIR / "runs"), help="run directories")
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/gpu_rows"))
    parser.add_argument("--eval-margin", type=float, default=90.0,
                        help="seconds kept for the final S = 50 evaluation")  # fmt: skip
    parser.add_argument("--min-minutes", type=float, default=1.0,
                        help="start no run with less training time than this")  # fmt: skip
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.parallel < 1:
        parser.error("--minutes must be > 0 and --parallel >= 1")
    if args.prepare:
        prepare(args.data_root)
    else:
        run(args)


if __name__ == "__main__":
    main()
