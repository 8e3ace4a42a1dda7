"""Generation speed (paper Fig. 7): seconds to sample one sequence of length T, batch size 1.

IAF/SCF (parallel in time) against the LSTM baseline of the same size (ancestral, serial), with
AF/SCF and AF/AF (serial in time; AF/AF also serial over the hidden dimension) for reference,
and "LSTM-ref": the same baseline stepped with one ``nn.LSTM`` call per step, as the reference
implementation does (on CPU each call pays oneDNN's weight re-layout).
Paper sizes (LSTMs 2 x 500, latent 50, flow MLPs 2 x 100; 5 flow layers, 3 for IAF/SCF) with
untrained weights: speed does not depend on them. Each point is the median of repeated full
generations (T fixed, z ~ p(z|T), x ~ p(x|z,T)) after one warm-up call, under
``torch.inference_mode``, as ``latentflow-sample`` runs them (each whole-sequence LSTM call picks
its kernel by length, ``latentflow.models.recurrent.sequence_rnn``). Also batch size 64 at a few
lengths. The models are the recipes' (``latentflow.recipes``) and the figure is
``latentflow.plotting.plot_generation_speed``'s.

Writes benchmarks/results/sample_speed.csv and sample_speed.png, prints the table, the
IAF/SCF-vs-LSTM crossover length and the targets; on CPU also where one T = 200 text generation
of IAF/SCF and of the LSTM spends its time (torch.profiler: LSTM kernels, other matmuls, other
ops, Python and dispatch), written to sample_profile.csv. Runs with jemalloc when it is
installed (it re-executes itself with LD_PRELOAD) and 2 threads unless told otherwise; both are
printed.

    python -m benchmarks.bench_sample [--quick] [--threads 2] [--allocator auto|jemalloc|glibc]
                                      [--models iaf_scf,lstm] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import RESULTS, module_command, module_environment
from benchmarks.csv_rows import write_rows
from benchmarks.step_costs import profile_step
from latentflow import recipes, runtime
from latentflow.models.emission import emission_sample
from latentflow.plotting import model_label, plot_generation_speed
from latentflow.run import build_recipe_net

JEMALLOC = Path(runtime.JEMALLOC)
CHILD_ENV = "LATENTFLOW_BENCH_CHILD"

# The rows timed by default, named as latentflow.recipes names models and variants; "lstm_nnlstm"
# is the LSTM stepped with one nn.LSTM call per step, as the reference implementation does.
MODELS = (
    "iaf_scf",
    "af_scf",
    "af_af",
    "lstm",
    "lstm_nnlstm",
    "iaf_scf_attention",  # beyond the paper
    "af_af_attention",
    "af_af_spline",
)
PROFILED = ("iaf_scf", "lstm")  # the text models whose T = 200 generation is profiled
TASKS = {  # data settings; Fig. 7: PTB characters and Nottingham
    "text": {"kind": "text", "num_features": 51, "max_length": 288},
    "music": {"kind": "music", "num_features": 88, "max_length": 625},
}
LENGTHS = {
    "full": {
        "text": [10, 25, 50, 100, 150, 200, 250, 288],
        "music": [10, 25, 50, 100, 200, 300, 400, 500],
    },
    "quick": {"text": [10, 50, 100, 200], "music": [10, 100, 200, 500]},
    "tiny": {"text": [3, 6], "music": [3, 6]},
}
BATCH64_LENGTHS = {"full": [50, 200], "quick": [50, 200], "tiny": [4]}
# The reference implementation (its authors' code), batch 1, T = 200, seconds: 2 threads on an
# AMD EPYC (Zen 4, no AMX), jemalloc; AF/AF only at 1 thread. Another CPU gives other numbers:
# compare ratios measured on one machine, not these seconds, across machines.
REFERENCE_T200 = {"iaf_scf": 0.082, "af_scf": 1.61, "af_af": 29.1, "lstm": 0.927}
# Targets: IAF/SCF at least as fast as the reference implementation; the others 2x faster.
TARGETS_T200 = {"iaf_scf": 0.082, "af_scf": 1.61 / 2, "af_af": 29.1 / 2, "lstm": 0.927 / 2}


def allocator() -> str:
    """The malloc this process runs with (from its memory maps), as this CSV has named it."""
    return "jemalloc" if runtime.jemalloc_loaded() else "glibc malloc"


def reexec_with_jemalloc(argv: list[str]) -> int | None:
    """Run this script again with jemalloc preloaded; None when not wanted or not possible."""
    if os.environ.get(CHILD_ENV) or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    if not JEMALLOC.exists():
        print(f"jemalloc not found at {JEMALLOC}: running with glibc malloc", flush=True)
        return None
    env = {
        **os.environ,
        CHILD_ENV: "1",
        "LD_PRELOAD": f"{JEMALLOC}:{os.environ['LD_PRELOAD']}"
        if os.environ.get("LD_PRELOAD")
        else str(JEMALLOC),
        "MALLOC_CONF": runtime.JEMALLOC_CONF,
    }
    return subprocess.call(module_command("bench_sample", *argv), env=module_environment(env))


def build(name: str, task: str, tiny: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    overrides = [*recipes.overrides("lstm" if name == "lstm_nnlstm" else name)]
    overrides += ["debug=tiny"] if tiny else []
    return build_recipe_net(overrides, TASKS[task]).eval()


def sample_nn_lstm_per_step(
    net: torch.nn.Module, lengths: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The baseline sampled the way the reference implementation (and this package's first
    version) did: one ``nn.LSTM`` call per time step, i.e. oneDNN's per-call weight re-layout
    on CPU. Same distribution as ``LSTMLanguageModel.sample``; shown as "LSTM-ref"."""
    B, T = lengths.shape[0], int(lengths.max())
    pos = net.pos(lengths, T)  # [B, T, P]
    prev, state, xs = net.start.expand(B, -1), None, []
    for t in range(T):
        logits, state = net._logits(torch.cat([prev, pos[:, t]], -1)[:, None], state)
        x_t = emission_sample(logits, net.text, False, generator)  # [B, 1 (, 88)]
        xs.append(x_t[:, 0])
        prev = net._embed(x_t)[:, 0]
    return torch.stack(xs, 1)


def time_sampling(
    net: torch.nn.Module, name: str, batch: int, length: int, repeats: int, device: str
) -> list[float]:
    """Wall-clock seconds of ``repeats`` full generations, after one warm-up call."""
    lengths = torch.full((batch,), length, dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(0)

    def run() -> None:
        if name == "lstm_nnlstm":
            sample_nn_lstm_per_step(net, lengths, generator)
        else:
            net.sample(lengths=lengths, generator=generator)  # as latentflow-sample runs it
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode():
        run()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return times


def crossover(lengths: list[int], fast: list[float], slow: list[float]) -> float | None:
    """Smallest length from which ``fast`` < ``slow`` stays true (linear interpolation of the
    difference between grid points); None if never."""
    diff = [f - s for f, s in zip(fast, slow, strict=True)]
    if diff[-1] >= 0:
        return None
    k = len(diff) - 1
    while k > 0 and diff[k - 1] < 0:
        k -= 1
    if k == 0:
        return float(lengths[0])
    l0, l1, d0, d1 = lengths[k - 1], lengths[k], diff[k - 1], diff[k]
    return l0 + (l1 - l0) * d0 / (d0 - d1)


def print_table(rows: list[dict], task: str, batch: int, models: list[str]) -> None:
    sel = [r for r in rows if r["task"] == task and r["batch_size"] == batch]
    if not sel:
        return
    lengths = sorted({r["length"] for r in sel})
    med = {(r["model"], r["length"]): r["median_s"] for r in sel}
    baselines = [b for b in ("lstm", "lstm_nnlstm") if b in models and "iaf_scf" in models]
    header = f"{'T':>5} " + " ".join(f"{model_label(m):>9}" for m in models)
    header += "".join(f" {model_label(b) + '/IAF':>12}" for b in baselines)
    print(f"\n{task}, batch size {batch}: median seconds per generation")
    print(header)
    for T in lengths:
        cells = [med.get((m, T)) for m in models]
        line = f"{T:>5} " + " ".join(f"{c:>9.4f}" if c is not None else f"{'-':>9}" for c in cells)
        for b in baselines:
            iaf, base = med.get(("iaf_scf", T)), med.get((b, T))
            line += f" {base / iaf:>11.2f}x" if iaf and base else f" {'-':>12}"
        print(line)
    for b in baselines:
        if all(("iaf_scf", T) in med and (b, T) in med for T in lengths):
            cross = crossover(
                lengths, [med["iaf_scf", T] for T in lengths], [med[b, T] for T in lengths]
            )
            where = "never (in this range)" if cross is None else f"T ~ {cross:.0f}"
            print(f"IAF/SCF faster than {model_label(b)} from: {where}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer lengths and repeats")
    parser.add_argument("--tiny", action="store_true", help="tiny models (smoke test only)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per point")
    parser.add_argument("--allocator", choices=["auto", "jemalloc", "glibc"], default="auto")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (GPU runs: not Fig. 7's CPU)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-batch64", action="store_true", help="skip the batch-64 points")
    return parser


def chosen_models(value: str) -> list[str]:
    """The rows of ``--models``: the recipes' models and variants, and ``lstm_nnlstm``."""
    known = [*MODELS, *recipes.models(), *(v.name for v in recipes.VARIANTS)]
    models = [m for m in value.split(",") if m]
    bad = [m for m in models if m not in known]
    if bad:
        raise SystemExit(f"--models: unknown {bad}; choose from {list(dict.fromkeys(known))}")
    return models


def points(name: str, task: str, mode: str, batch64: bool) -> list[tuple[int, int]]:
    """The (batch size, length) points of a model on a task."""
    out = [(1, T) for T in LENGTHS[mode][task]]
    if batch64:
        # AF/AF at batch 64 solves its H x layers scalar equations on tensors: slow enough to
        # keep to the shortest length outside a full run.
        cap = 50 if name == "af_af" and mode == "quick" else None
        out += [(64, T) for T in BATCH64_LENGTHS[mode] if cap is None or T <= cap]
    return out


def time_models(args, models: list[str], mode: str, repeats: int, alloc: str):
    """Every point of every model on both tasks: the CSV's rows, and the text models whose
    generation is profiled afterwards."""
    rows, profiled = [], {}
    for task in TASKS:
        for name in models:
            net = build(name, task, args.tiny).to(args.device)
            if task == "text" and name in PROFILED:
                profiled[name] = net
            for batch, T in points(name, task, mode, not args.no_batch64):
                times = time_sampling(net, name, batch, T, repeats, args.device)
                med = statistics.median(times)
                rows.append({"task": task, "model": name, "batch_size": batch, "length": T,
                             "repeats": repeats, "median_s": med, "min_s": min(times),
                             "max_s": max(times), "tokens_per_s": batch * T / med,
                             "threads": torch.get_num_threads(), "allocator": alloc,
                             "device": args.device, "torch": torch.__version__})  # fmt: skip
                print(
                    f"{task:5s} {model_label(name):12s} B={batch:<3d} T={T:<4d} {med:9.4f} s",
                    flush=True,
                )
    return rows, profiled


def report(args, rows: list[dict], profiled: dict, models: list[str], header: str) -> None:
    """Write the CSVs and the figure; print the tables, profiles and targets."""
    csv_path, png_path = args.out_dir / "sample_speed.csv", args.out_dir / "sample_speed.png"
    write_rows(csv_path, rows)
    print(f"\n{header}; at the end {os.getloadavg()[0]:.2f}")
    for task in TASKS:
        for batch in (1, 64):
            print_table(rows, task, batch, models)
    profiles = []
    if args.device == "cpu":
        for name, net in profiled.items():
            T = 200 if not args.tiny else LENGTHS["tiny"]["text"][-1]
            profiles.append({"model": name, "length": T, **profile_generation(net, T)})
        write_rows(args.out_dir / "sample_profile.csv", profiles)
    print_profiles(profiles)
    if not args.tiny and args.device == "cpu":
        print_targets(rows)
    plot_generation_speed(rows, by_batch=True, logy=True, title=header, path=png_path, dpi=100)
    print(f"\nwrote {csv_path} and {png_path}")


def main() -> None:
    args = build_parser().parse_args()
    if args.allocator != "glibc":
        code = reexec_with_jemalloc(sys.argv[1:])
        if code is not None:
            raise SystemExit(code)
    alloc = allocator()
    if args.allocator == "jemalloc" and alloc != "jemalloc":
        raise SystemExit(f"--allocator jemalloc: not loaded (looked for {JEMALLOC})")
    torch.set_num_threads(args.threads)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    repeats = args.repeats or {"full": 5, "quick": 3, "tiny": 1}[mode]
    models = chosen_models(args.models)
    header = (
        f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, {alloc}, "
        f"{'tiny models' if args.tiny else 'paper sizes'}, median of {repeats} after warm-up; "
        f"load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
    )
    print(header, flush=True)
    rows, profiled = time_models(args, models, mode, repeats, alloc)
    report(args, rows, profiled, models, header)


def profile_generation(net: torch.nn.Module, length: int) -> dict[str, float]:
    """Where one batch-1 generation's time goes (torch.profiler, self CPU time; the categories
    of ``benchmarks.bench_train``'s step profile), after a warm-up call."""
    lengths = torch.full((1,), length, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        net.sample(lengths=lengths, generator=generator)  # warm-up
        return profile_step(lambda: net.sample(lengths=lengths, generator=generator), "cpu")


def print_profiles(profiles: list[dict]) -> None:
    if not profiles:
        return
    print("\nwhere a batch-1 text generation's time goes (torch.profiler, one call, seconds)")
    print(f"  {'model':12s} {'T':>4s} {'wall':>7s} {'LSTM':>7s} {'matmul':>7s} {'other':>7s} "
          f"{'python':>7s}")  # fmt: skip
    for r in profiles:
        print(
            f"  {model_label(r['model']):12s} {r['length']:4d} {r['profiled_wall']:7.4f} "
            f"{r['lstm']:7.4f} {r['matmul']:7.4f} {r['elementwise'] + r['allocation']:7.4f} "
            f"{r['python_and_dispatch']:7.4f}"
        )


def print_targets(rows: list[dict]) -> None:
    med = {
        r["model"]: r["median_s"]
        for r in rows
        if r["task"] == "text" and r["batch_size"] == 1 and r["length"] == 200
    }
    if not med:
        return
    print("\ntext, T=200, batch 1: ours vs the reference's published seconds (AMD EPYC)")
    for m in MODELS:
        if m in med:
            target, ref = TARGETS_T200.get(m), REFERENCE_T200.get(m)
            ok = "" if target is None else f"   target <= {target:.3f} s: "
            ok += "" if target is None else ("ok" if med[m] <= target else "MISSED")
            shown = f"reference {ref:6.3f} s" if ref else " " * 18
            print(f"  {model_label(m):12s} {med[m]:8.3f} s   {shown}{ok}")
    if "iaf_scf" in med and "lstm" in med:
        ratio = med["lstm"] / med["iaf_scf"]
        print(
            f"  IAF/SCF vs our LSTM: {ratio:.1f}x faster (target >= 2x: "
            f"{'ok' if ratio >= 2 else 'MISSED'})"
        )
    if "iaf_scf" in med and "lstm_nnlstm" in med:
        ratio = med["lstm_nnlstm"] / med["iaf_scf"]
        print(f"  IAF/SCF vs LSTM-ref (nn.LSTM per step, as the reference): {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
