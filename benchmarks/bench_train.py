"""Training-step and IS-evaluation speed of every prior against the LSTM baseline.

Each row runs in a fresh subprocess (clean allocator state, its own peak memory); the parent
measures the machine's dense matmul rate in the same run, so every row also reads as a fraction
of its compute floor (analytic FLOPs, benchmarks/flops.py, over that rate), and every row is
compared with the LSTM baseline row of the same size and batch measured in the same run.

    python benchmarks/bench_train.py            # paper sizes + CPU size, allocator comparison
    python benchmarks/bench_train.py --quick    # CPU size only, < 3 minutes
    python benchmarks/bench_train.py --device cuda --sizes paper --precisions fp32,bf16
    python benchmarks/bench_train.py --compile  # flow stacks through torch.compile

On a GPU the floor is the dense matmul rate of the row's precision (fp32 or bf16 autocast),
measured in the same run; allocator rows are CPU-only.

Batches are real PTB training sentences of fixed composition (16 of the median length 112, 16
of lengths 104-119 as a length-bucketed training batch has them, and 16 of length 250) when
the data root has them, else random tokens of those lengths.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from latentflow import runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csv_rows import write_rows  # noqa: E402
from flops import Sizes, step_flops  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
JEMALLOC = runtime.JEMALLOC
# what `make train` runs on: jemalloc where it is installed, else glibc with our tuning
MAKE_TRAIN_ALLOCATOR = "jemalloc" if Path(JEMALLOC).exists() else "glibc-tuned"
# a row's allocator -> what runtime.allocator() says in a process running on it
RUNTIME_NAME = {"glibc": "glibc", "glibc-tuned": "glibc (tuned)", "jemalloc": "jemalloc"}
ALLOCATORS = tuple(RUNTIME_NAME)
MODELS = ("lstm", "af_af", "af_scf", "iaf_scf")
# Beyond the paper (issue 17): a recipe prior with other parts; FLOPs from FlopCounterMode.
VARIANTS = {
    "af_af_spline": ("af_af", ["transform=spline"]),
    "af_af_affine": ("af_af", ["transform=affine"]),
    "af_af_attention": ("af_af", ["conditioner=attention"]),
    "iaf_scf_attention": ("iaf_scf", ["conditioner=attention"]),
}
SIZES = {
    "paper": Sizes(),
    "cpu": Sizes(embed=128, hidden=128, latent=16, pos=16, flow_hidden=64),
}
ELBO_SAMPLES = {"paper": 10, "cpu": 3}


# ---------------------------------------------------------------------------- child: one row
def make_batch(
    length: int, count: int, vocab: int, root: str | None, mixed: bool = False
) -> dict[str, torch.Tensor]:
    """``count`` real PTB train sentences of exactly ``length`` characters (nearest if short
    of them), else random tokens. ``mixed``: one sentence per length in
    ``length - count // 2 ... length + count // 2 - 1``, as a length-bucketed training batch
    is (padding, and the masking it needs, then cost what they cost in training)."""
    if mixed:
        parts = [
            make_batch(length - count // 2 + i, 1, vocab, root) for i in range(count)
        ]  # one sentence of each length
        T = max(int(p["lengths"].max()) for p in parts)
        x = torch.zeros(count, T, dtype=torch.long)
        for i, p in enumerate(parts):
            x[i, : p["x"].shape[1]] = p["x"][0]
        return {"x": x, "lengths": torch.cat([p["lengths"] for p in parts])}
    rows = []
    path = Path(root or os.environ.get("LATENTFLOW_DATA", "data")) / "ptb" / "ptb.char.train.txt"
    if path.exists():
        from latentflow.data.vocab import CharVocab

        text = path.read_text()
        vocab_obj = CharVocab.build([sorted(set(text.split()))])  # the same 49 symbols + 2
        # Nearest lengths first; split only the chosen lines (keeps this process's peak RSS low).
        lines = sorted(text.splitlines(), key=lambda ln: (abs(len(ln.split()) - length), ln))
        rows = [torch.tensor(vocab_obj.encode(ln.split())) for ln in lines[:count]]
        del text, lines
    if not rows:
        gen = torch.Generator().manual_seed(0)
        rows = [torch.randint(2, vocab, (length,), generator=gen) for _ in range(count)]
    lengths = torch.tensor([len(r) for r in rows])
    x = torch.zeros(count, int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r
    return {"x": x, "lengths": lengths}


def run_row(spec: dict) -> dict:
    from latentflow.run import build_recipe_net
    from latentflow.runtime import apply_runtime

    torch.manual_seed(0)
    apply_runtime(spec["threads"], malloc=spec["allocator"] == "glibc-tuned")
    device = torch.device(spec.get("device", "cpu"))
    bf16 = spec.get("precision", "fp32") == "bf16"
    s = Sizes(**spec["sizes"])
    model_kind = "lstm" if spec["model"] == "lstm" else "flow"
    sizes = [
        f"model.embed_dim={s.embed}",
        f"model.hidden_dim={s.hidden}",
        f"model.num_layers={s.layers}",
        f"model.pos_dim={s.pos}",
    ]
    if model_kind == "lstm":
        overrides = ["model=lstm", *sizes, "model.dropout=0.0"]
    else:
        prior, extra = VARIANTS.get(spec["model"], (spec["model"], []))
        overrides = [f"prior={prior}", *extra, *sizes, f"prior.latent_dim={s.latent}"]
        overrides += [f"prior.flow.hidden_features={s.flow_hidden}", "prior.conditioner.dropout=0"]
    data = {"kind": "text", "num_features": s.vocab, "max_length": 300}
    net = build_recipe_net(overrides, data)
    net = net.to(device)
    if spec.get("compile") and model_kind == "flow":
        from latentflow.models.compile import compile_flows

        compile_flows(net)
    mixed = spec["batch_name"] == "mixed"
    batch = make_batch(spec["length"], spec["batch"], s.vocab, spec.get("root"), mixed)
    x, lengths = batch["x"].to(device), batch["lengths"].to(device)
    samples = spec["samples"] if model_kind == "flow" else 1
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else None

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    times = []
    if spec["mode"] == "train":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for i in range(spec["warmup"] + spec["steps"]):
            start = sync()
            with autocast or contextlib.nullcontext():
                out = net.training_terms(x, lengths, samples, 1.0)
                loss = -out["objective"].sum() / lengths.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.25)
            opt.step()
            if i >= spec["warmup"]:
                times.append(sync() - start)
    else:
        net.eval()
        with torch.no_grad(), autocast or contextlib.nullcontext():
            for i in range(spec["warmup"] + spec["steps"]):
                start = sync()
                net.evaluate(x, lengths, spec["samples"], spec["chunk"])
                if i >= spec["warmup"]:
                    times.append(sync() - start)
    if not spec.get("count", True):  # timing only (benchmarks run side by side with others)
        return {"seconds": statistics.median(times), "tokens": int(lengths.sum())}
    flow_layers = len(net.prior.flow.layers) if hasattr(net, "prior") else s.flow_layers
    s_flow = replace(s, flow_layers=flow_layers)
    tokens = int(lengths.sum())
    analytic = spec["model"] not in VARIANTS
    train = spec["mode"] == "train"
    flops = step_flops(s_flow, spec["model"], tokens, samples, train) if analytic else None

    def one_step() -> None:
        if spec["mode"] == "train":
            with autocast or contextlib.nullcontext():
                out = net.training_terms(x, lengths, samples, 1.0)
                loss = -out["objective"].sum() / lengths.sum()
            loss.backward()
            net.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast or contextlib.nullcontext():
                net.evaluate(x, lengths, spec["samples"], spec["chunk"])

    measured, shapes = count_flops(one_step, device)
    floor_s = shape_floor(shapes, device, bf16)
    return {
        "seconds": statistics.median(times),
        "tokens": tokens,
        "flops": measured if flops is None else flops,
        "flops_analytic": flops is not None,
        "flops_measured": measured,
        "floor_s": floor_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else 0.0,
        "profile": profile_step(one_step, device),
        "allocator_loaded": runtime.allocator(),  # checked by the parent against the row's
    }


GEMMS = ("mm", "addmm", "bmm", "baddbmm")


def count_flops(step, device: torch.device) -> tuple[int, dict]:
    """FLOPs of one step as PyTorch counts them (``FlopCounterMode``, forward and backward,
    the LSTMs decomposed into their matmuls by ``native_rnn``: the same arithmetic), and the
    same step as it runs: the time of its LSTM kernels (oneDNN) and the shape and FLOPs of
    every other matmul: ``{"lstm_s": seconds, "gemms": {(batch, m, k, n): flops}}``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from latentflow.models.recurrent import native_rnn

    counter = FlopCounterMode(display=False)
    with native_rnn(), counter:
        step()
    found: dict = {"lstm_s": 0.0, "gemms": {}}

    class AsItRuns(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if "rnn" in name or "lstm" in name:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                out = func(*args, **(kwargs or {}))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                found["lstm_s"] += time.perf_counter() - start
                return out
            if name in GEMMS:
                a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
                batch = a.shape[0] if a.dim() == 3 else 1
                key = (batch, a.shape[-2], a.shape[-1], b.shape[-1])
                found["gemms"][key] = found["gemms"].get(key, 0) + 2 * math.prod(key)
            return func(*args, **(kwargs or {}))

    with AsItRuns():
        step()
    return int(counter.get_total_flops()), found


def shape_floor(found: dict, device: torch.device, bf16: bool, cover: float = 0.95) -> float:
    """A floor for the step at the rates this machine reaches *at its shapes*, measured now
    (between rows, not once per run): the time of its LSTM kernels as they ran, plus its other
    matmuls at the rate measured at their own shapes (those holding ``cover`` of their FLOPs
    timed; the rest at the slowest rate seen)."""
    shapes = found["gemms"]
    total = sum(shapes.values())
    dtype = torch.bfloat16 if bf16 else torch.float32
    seconds, done, slowest = found["lstm_s"], 0, None
    for (batch, m, k, n), flops in sorted(shapes.items(), key=lambda kv: -kv[1]):
        if done >= cover * total:
            break
        a = torch.randn(batch, m, k, device=device, dtype=dtype)
        b = torch.randn(batch, k, n, device=device, dtype=dtype)
        reps = max(3, min(200, int(2e9 / max(1, 2 * batch * m * k * n))))
        torch.bmm(a, b)
        start = time.perf_counter()
        for _ in range(reps):
            torch.bmm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rate = 2 * batch * m * k * n * reps / (time.perf_counter() - start)  # FLOP/s
        slowest = rate if slowest is None else min(slowest, rate)
        seconds += flops / rate
        done += flops
    if total > done and slowest:
        seconds += (total - done) / slowest
    return seconds


def profile_step(step, device: torch.device) -> dict[str, float]:
    """Where one step's time goes (torch.profiler, self CPU time): the LSTM kernels, matmuls,
    the prior's serial loop (inclusive), elementwise and other ops, allocation, and what no op
    accounts for (Python and dispatch)."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    wall = time.perf_counter() - start
    parts = {"lstm": 0.0, "matmul": 0.0, "elementwise": 0.0, "allocation": 0.0}
    serial = 0.0
    for event in prof.key_averages():
        name, t = event.key.lower(), event.self_cpu_time_total / 1e6
        if name == "latentflow.serial_loop":
            serial += event.cpu_time_total / 1e6
            continue
        if "lstm" in name or "rnn" in name:
            parts["lstm"] += t
        elif any(g in name for g in ("::mm", "addmm", "bmm", "matmul", "::linear")):
            parts["matmul"] += t
        elif any(a in name for a in ("empty", "resize", "::zeros", "::ones")):
            parts["allocation"] += t
        else:
            parts["elementwise"] += t
    parts["python_and_dispatch"] = max(0.0, wall - sum(parts.values()))
    parts["serial_loop_inclusive"] = serial
    parts["profiled_wall"] = wall
    return parts


# ---------------------------------------------------------------------------- parent
def matmul_rate(
    threads: int, n: int = 2048, repeats: int = 5, device: str = "cpu", precision: str = "fp32"
) -> float:
    """Dense matmul GFLOP/s on ``threads`` threads or a GPU (median of ``repeats``), in fp32 or
    under bf16 autocast (what the rows of that precision run)."""
    torch.set_num_threads(threads)
    if device != "cpu":
        n, repeats = 8192, 20
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    if precision == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    elif device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False  # the floor of true fp32
    a @ b
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def row_environment(threads: int, allocator: str) -> dict[str, str]:
    """The environment of a row's process: its thread count, jemalloc preloaded for a jemalloc
    row and for no other (bench_versions runs other checkouts' rows with it too)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("LD_PRELOAD", None)
    if allocator == "jemalloc":
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = runtime.JEMALLOC_CONF
    return env


def spawn(spec: dict) -> dict:
    env = row_environment(spec["threads"], spec["allocator"])
    proc = subprocess.run(
        [sys.executable, __file__, "--row", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"row {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(args) -> list[dict]:
    sizes = args.sizes or (["cpu"] if args.quick else ["paper", "cpu"])
    batches = [
        b
        for b in [("median", 112), ("mixed", 112), ("long", 250)]
        if b[0] in (args.batches or "median,mixed,long")
    ]
    rows = []
    gpu = args.device != "cpu"
    main_alloc = main_allocator(args)
    models = ["lstm"] + [m for m in args.models or MODELS if m != "lstm"]  # the ratios' base
    for size in sizes:
        steps = args.steps or (3 if size == "cpu" else 2) * (10 if gpu else 1)
        for bname, length in batches:
            for model in models:
                rows.append(
                    dict(
                        mode="train",
                        size=size,
                        batch_name=bname,
                        length=length,
                        batch=16,
                        model=model,
                        samples=ELBO_SAMPLES[size],
                        steps=steps,
                        warmup=1,
                        allocator=main_alloc,
                    )
                )
        for model in () if args.no_eval else models:
            rows.append(
                dict(
                    mode="eval",
                    size=size,
                    batch_name="median",
                    length=112,
                    batch=16,
                    model=model,
                    samples=50 if model != "lstm" else 1,
                    chunk=10,
                    steps=max(1, steps - 1),
                    warmup=1,
                    allocator=main_alloc,
                )
            )
        if (not args.quick or args.allocators) and not gpu and ("long", 250) in batches:
            allocators = ["glibc", "glibc-tuned"] + (
                ["jemalloc"] if Path(JEMALLOC).exists() else []
            )
            for alloc in allocators:
                if alloc == main_alloc:
                    continue  # already measured above
                rows.append(
                    dict(
                        mode="train",
                        size=size,
                        batch_name="long",
                        length=250,
                        batch=16,
                        model="af_af",
                        samples=ELBO_SAMPLES[size],
                        steps=steps,
                        warmup=1,
                        allocator=alloc,
                    )
                )
    for r in rows:
        r.update(threads=args.threads, root=args.root, sizes=asdict(SIZES[r["size"]]))
        r.update(device=args.device, precision="fp32", compile=args.compile)
    # every row once per precision (the allocator rows: fp32 only)
    extra = [p for p in args.precisions if p != "fp32"]
    rows += [{**r, "precision": p} for p in extra for r in rows if r["allocator"] == main_alloc]
    if "fp32" not in args.precisions:
        rows = [r for r in rows if r["precision"] != "fp32"]
    return rows


def main_allocator(args) -> str:
    """The allocator of every row but the allocator comparison's: ``--allocator``, by default
    what ``make train`` uses (jemalloc where it is installed)."""
    chosen = getattr(args, "allocator", None) or "auto"
    if args.device != "cpu":
        return "glibc-tuned"
    if chosen == "auto":
        return MAKE_TRAIN_ALLOCATOR
    if chosen == "jemalloc" and not Path(JEMALLOC).exists():
        raise SystemExit(f"--allocator jemalloc: {JEMALLOC} is not installed")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU size only (< 3 minutes)")
    parser.add_argument("--allocators", action="store_true", help="allocator rows in --quick")
    parser.add_argument(
        "--allocator",
        choices=["auto", *ALLOCATORS],
        default="auto",
        help="allocator of the main rows (auto: what `make train` uses, jemalloc if installed)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row")
    parser.add_argument("--root", default=None, help="data root (default: LATENTFLOW_DATA)")
    parser.add_argument("--sizes", type=lambda v: v.split(","), help="paper,cpu (default both)")
    parser.add_argument("--batches", default=None, help="median,mixed,long (default all three)")
    parser.add_argument("--no-eval", action="store_true", help="skip the IS-evaluation rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--precisions",
        type=lambda v: v.split(","),
        default=["fp32"],
        help="fp32,bf16 (bf16 = bf16 autocast, as trainer.precision=bf16-mixed)",
    )
    parser.add_argument(
        "--models", type=lambda v: v.split(","), help="af_af,af_scf,iaf_scf (LSTM always)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the flow stacks")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return

    bad = set(args.precisions) - {"fp32", "bf16"}
    bad |= set(args.models or ()) - set(MODELS) - set(VARIANTS)
    if bad or args.device not in ("cpu", "cuda"):
        parser.error(
            f"--precisions takes fp32,bf16, --models {','.join([*MODELS[1:], *VARIANTS])}, "
            "--device cpu|cuda "
            f"(got {sorted(bad) or args.device})"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible to PyTorch")
    rates = {
        p: matmul_rate(args.threads, device=args.device, precision=p) for p in args.precisions
    }
    where = args.device if args.device != "cpu" else f"{args.threads} threads"
    for p, rate in rates.items():
        print(f"dense {p} matmul: {rate:.1f} GFLOP/s on {where}")
    results, profiles = [], []
    main_alloc = main_allocator(args)
    print(f"allocator of the main rows: {main_alloc}")
    for spec in plan(args):
        out = spawn(spec)
        loaded = out.pop("allocator_loaded")
        if spec["device"] == "cpu" and loaded != RUNTIME_NAME[spec["allocator"]]:
            raise SystemExit(f"row {spec['model']} asked for {spec['allocator']}, ran on {loaded}")
        row = {
            k: spec[k]
            for k in (
                "mode",
                "size",
                "batch_name",
                "length",
                "model",
                "samples",
                "allocator",
                "threads",
                "device",
                "precision",
                "compile",
            )
        }
        rate = rates[spec["precision"]]
        profile = out.pop("profile")
        row.update(out)
        row["chars_per_s"] = out["tokens"] / out["seconds"]
        row["gflops"] = out["flops"] / out["seconds"] / 1e9
        row["flops_ratio"] = out["flops_measured"] / out["flops"]  # measured / analytic
        # floor: this step's own matmuls at the rates measured at their shapes, in this row
        row["floor_fraction"] = out["floor_s"] / out["seconds"]
        row["big_matmul_floor_fraction"] = out["flops"] / (rate * 1e9) / out["seconds"]
        row["matmul_gflops"] = rate
        results.append(row)
        keys = ("mode", "size", "batch_name", "model", "allocator", "precision")
        profiles.append({**{k: row[k] for k in keys}, **profile})
        print(
            f"  {row['mode']:5s} {row['size']:5s} {row['batch_name']:6s} {row['model']:8s} "
            f"{row['allocator']:11s} {row['precision']:4s} {row['seconds']:8.3f} s",
            flush=True,
        )
    for row in results:  # every row against the LSTM row of the same run, size, batch, mode
        base = next(
            (
                r
                for r in results
                if r["model"] == "lstm"
                and r["mode"] == row["mode"]
                and r["size"] == row["size"]
                and r["batch_name"] == row["batch_name"]
                and r["allocator"] == main_alloc
                and r["precision"] == row["precision"]
            ),
            None,
        )  # none when that batch ran only for the allocator rows
        row["vs_lstm"] = row["seconds"] / base["seconds"] if base else float("nan")
    name = "train_quick.csv" if args.quick else "train.csv"
    if args.device != "cpu":
        name = name.replace("train", f"train_{args.device}")
    write_rows(RESULTS / name, results)
    profile_name = name.replace(".csv", "_profile.csv")
    write_rows(RESULTS / profile_name, profiles)
    header = (
        f"{'mode':5s} {'size':5s} {'batch':6s} {'model':8s} {'allocator':11s} {'prec':4s} "
        f"{'s/step':>8s} {'chars/s':>9s} {'GFLOP/s':>8s} {'meas/an':>7s} {'floor':>6s} "
        f"{'vs LSTM':>8s} {'peak MB':>8s}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(
            f"{r['mode']:5s} {r['size']:5s} {r['batch_name']:6s} {r['model']:8s} "
            f"{r['allocator']:11s} {r['precision']:4s} {r['seconds']:8.3f} "
            f"{r['chars_per_s']:9.0f} {r['gflops']:8.1f} {r['flops_ratio']:7.2f} "
            f"{r['floor_fraction']:6.0%} "
            f"{r['vs_lstm']:7.1f}x {r['peak_gpu_mb'] or r['peak_rss_mb']:8.0f}"
        )
    print(
        f"\nwritten: {RESULTS / name} and {profile_name} ({where}; allocator per row; "
        "meas/an = FLOPs counted by FlopCounterMode / analytic (benchmarks/flops.py); floor = "
        "the step's own matmuls at the rate measured at their shapes in that row; "
        "big-matmul rate "
        + ", ".join(f"{r:.0f} GFLOP/s ({p})" for p, r in rates.items())
        + "; peak MB: GPU memory on a GPU, else RSS)"
    )


if __name__ == "__main__":
    main()
