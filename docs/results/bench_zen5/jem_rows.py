"""Timing-only rows on jemalloc (what `make train` uses), fp32 and bf16, paper size, and two tuned-glibc
anchors. Run from the repository root: python docs/results/bench_zen5/jem_rows.py -> benchmarks/results/jemalloc_rows.csv"""
import argparse, csv, sys
sys.path.insert(0, "benchmarks")
import bench_train as bt
args = argparse.Namespace(quick=False, allocators=False, threads=2, steps=2, root=None, sizes=["paper"],
    batches="median,long", no_eval=True, device="cpu", precisions=["fp32", "bf16"], models=None, compile=False)
rows = []
for spec in bt.plan(args):
    if spec["allocator"] != "glibc-tuned":
        continue
    anchor = spec["model"] == "af_af" and spec["batch_name"] == "long"
    for alloc in (["jemalloc", "glibc-tuned"] if anchor else ["jemalloc"]):
        s = {**spec, "allocator": alloc, "count": False}
        out = bt.spawn(s)
        r = dict(batch=s["batch_name"], model=s["model"], allocator=alloc, precision=s["precision"],
                 seconds=round(out["seconds"], 4), chars_per_s=round(out["tokens"] / out["seconds"], 1))
        print(r, flush=True); rows.append(r)
with open("benchmarks/results/jemalloc_rows.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
