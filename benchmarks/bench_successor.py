"""TarFlowLM beside the 2019 rows at the CPU width: training step time and batch-1 generation
time of each ``experiment=cpu/<dataset>/<row>`` recipe, in one run on one machine.

For JSB Chorales and PTB characters, each recipe's model as ``latentflow-train`` builds it
(untrained weights: speed does not depend on them, except that the mixture-CDF inverse's
Newton iterations do a little), then:

- a training step: ``training_terms`` with the recipe's K ELBO samples, backward, gradient
  clipping and Adam, on a batch of the recipe's size (JSB: 5 sequences of 60 steps, 4 notes a
  step; PTB: 32 sentences of 120 characters), the median of ``--steps`` after two warm-ups;
- a generation: ``net.sample`` of one sequence (JSB: 60 steps, PTB: 200 characters) under
  ``torch.inference_mode``, as ``latentflow-sample`` runs it, the median of ``--repeats``
  after a warm-up.

Writes benchmarks/results/successor_speed.csv and prints the table, the threads and the
allocator. Run it on an idle machine (another process on the cores changes every number):

    python -m benchmarks.bench_successor [--threads 2] [--models af_af,tarflowlm] [--tiny]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from benchmarks import RESULTS
from benchmarks.csv_rows import write_rows
from benchmarks.step_costs import median_seconds
from latentflow import recipes, runtime
from latentflow.configs import compose

MODELS = ("af_af", "af_scf", "iaf_scf", "tarflowlm")
TASKS = {  # the data sizes the recipes' models are built for, and the timed shapes
    "jsb": {"data": {"kind": "music", "num_features": 88, "max_length": 180},
            "batch": 5, "length": 60, "sample_length": 60},
    "ptb": {"data": {"kind": "text", "num_features": 51, "max_length": 287},
            "batch": 32, "length": 120, "sample_length": 200},
}  # fmt: skip


def make_batch(task: dict, batch: int, length: int, gen: torch.Generator):
    """A batch of ``batch`` sequences of ``length`` steps: random characters (ids >= 2, past
    padding and end) or piano rolls with 4 of 88 notes on a step."""
    data = task["data"]
    lengths = torch.full((batch,), length, dtype=torch.long)
    if data["kind"] == "text":
        return torch.randint(2, data["num_features"], (batch, length), generator=gen), lengths
    notes = torch.rand(batch, length, data["num_features"], generator=gen).argsort(-1)[..., :4]
    x = torch.zeros(batch, length, data["num_features"])
    return x.scatter_(-1, notes, 1.0), lengths


def build(dataset: str, model: str, tiny: bool):
    """A recipe's model and its config (K, gradient clipping) as a training run composes them."""
    from latentflow.configs import components_of
    from latentflow.models.build import build_net

    overrides = [f"experiment=cpu/{dataset}/{model}", *(["debug=tiny"] if tiny else [])]
    cfg = compose(overrides)
    torch.manual_seed(0)
    net = build_net(components_of(cfg), TASKS[dataset]["data"])
    return net, cfg


def time_row(dataset: str, model: str, args) -> dict:
    task = TASKS[dataset]
    net, cfg = build(dataset, model, args.tiny)
    samples = int(cfg.train.elbo_samples)
    batch, length = (2, 6) if args.tiny else (task["batch"], task["length"])
    gen = torch.Generator().manual_seed(0)
    x, lengths = make_batch(task, batch, length, gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def train_step() -> None:
        out = net.training_terms(x, lengths, samples, 1.0)
        loss = -out["objective"].sum() / lengths.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), float(cfg.trainer.gradient_clip_val))
        opt.step()

    net.train()
    step_s = median_seconds(train_step, args.steps, warmup=2)
    net.eval()
    T = 6 if args.tiny else task["sample_length"]
    one = torch.full((1,), T, dtype=torch.long)

    def generate() -> None:
        with torch.inference_mode():
            net.sample(lengths=one, generator=torch.Generator().manual_seed(0))

    sample_s = median_seconds(generate, args.repeats)
    params = sum(p.numel() for p in net.parameters())
    return {"dataset": dataset, "model": model, "parameters": params, "elbo_samples": samples,
            "batch": batch, "length": length, "step_s": step_s,
            "tokens_per_s": batch * length / step_s, "sample_length": T, "sample_s": sample_s,
            "threads": torch.get_num_threads(), "allocator": runtime.allocator(),
            "torch": torch.__version__}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--datasets", default=",".join(TASKS), help="comma-separated subset")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--repeats", type=int, default=5, help="timed generations")
    parser.add_argument("--tiny", action="store_true", help="tiny models (smoke test only)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--steps, --repeats and --threads must be >= 1")
    models = [m for m in args.models.split(",") if m]
    datasets = [d for d in args.datasets.split(",") if d]
    bad = [d for d in datasets if d not in TASKS]
    bad += [f"cpu/{d}/{m}" for d in datasets if d in TASKS for m in models
            if not (recipes.EXPERIMENT_DIR / "cpu" / d / f"{m}.yaml").exists()]  # fmt: skip
    if bad:
        raise SystemExit(f"unknown dataset or recipe {bad}: datasets {list(TASKS)}, models "
                         f"with a cpu/<dataset>/<model> recipe, e.g. {list(MODELS)}")  # fmt: skip
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {runtime.allocator()}, "
        f"load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)",
        flush=True,
    )
    rows = []
    print(f"{'dataset':7s} {'model':10s} {'params':>9s} {'K':>2s} {'step s':>8s} "
          f"{'tokens/s':>9s} {'T':>4s} {'sample s':>9s}")  # fmt: skip
    for dataset in datasets:
        for model in models:
            r = time_row(dataset, model, args)
            rows.append(r)
            print(f"{dataset:7s} {model:10s} {r['parameters']:9,d} {r['elbo_samples']:2d} "
                  f"{r['step_s']:8.4f} {r['tokens_per_s']:9.0f} {r['sample_length']:4d} "
                  f"{r['sample_s']:9.4f}", flush=True)  # fmt: skip
    path = args.out_dir / "successor_speed.csv"
    write_rows(path, rows)
    print(f"load average at the end {os.getloadavg()[0]:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
