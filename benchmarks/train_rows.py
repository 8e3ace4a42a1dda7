"""One row of ``benchmarks.bench_train``, timed in the process that runs it: the batch, the
model a recipe builds at the row's size, its training step or IS evaluation, the median step
time and (unless the row says ``count: false``) its FLOPs, compute floor, peak memory and
profile. ``bench_train`` runs each row in a fresh subprocess (``--row``)."""

from __future__ import annotations

import os
import resource
import statistics
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.flops import Sizes, step_flops
from benchmarks.step_costs import count_flops, profile_step, shape_floor
from latentflow import recipes, runtime

# The LSTM baseline (the ratios' base) first, then the flow rows every dataset has a recipe
# for; their FLOPs are analytic (benchmarks.flops).
MODELS = (recipes.LSTM, *(m for m in recipes.main_models() if m != recipes.LSTM))


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


def row_overrides(spec: dict) -> list[str]:
    """The config overrides that build a row's model (``latentflow.recipes``) at its sizes."""
    s = Sizes(**spec["sizes"])
    sizes = [
        f"model.embed_dim={s.embed}",
        f"model.hidden_dim={s.hidden}",
        f"model.num_layers={s.layers}",
        f"model.pos_dim={s.pos}",
    ]
    if spec["model"] == recipes.LSTM:
        return [*recipes.overrides(recipes.LSTM), *sizes, "model.dropout=0.0"]
    flow = [f"prior.latent_dim={s.latent}", f"prior.flow.hidden_features={s.flow_hidden}"]
    return [*recipes.overrides(spec["model"]), *sizes, *flow, "prior.conditioner.dropout=0"]


def build_row(spec: dict) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A row's model on its device (its flow stacks compiled if asked) and its batch."""
    from latentflow.run import build_recipe_net

    device = torch.device(spec.get("device", "cpu"))
    vocab = Sizes(**spec["sizes"]).vocab
    data = {"kind": "text", "num_features": vocab, "max_length": 300}
    net = build_recipe_net(row_overrides(spec), data).to(device)
    if spec.get("compile") and spec["model"] != recipes.LSTM:
        from latentflow.models.compile import compile_flows

        compile_flows(net)
    mixed = spec["batch_name"] == "mixed"
    batch = make_batch(spec["length"], spec["batch"], vocab, spec.get("root"), mixed)
    return net, batch["x"].to(device), batch["lengths"].to(device)


def row_step(spec: dict, net, x, lengths, opt=None):
    """One step of a row as a function: a training step (forward, backward; with ``opt``
    clipping and Adam, without it the gradients dropped) or an IS evaluation."""
    samples = spec["samples"] if spec["model"] != recipes.LSTM else 1
    bf16 = spec.get("precision", "fp32") == "bf16"

    def precision():
        device_type = torch.device(spec.get("device", "cpu")).type
        return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def train_step() -> None:
        with precision():
            out = net.training_terms(x, lengths, samples, 1.0)
            loss = -out["objective"].sum() / lengths.sum()
        if opt is None:
            loss.backward()
            net.zero_grad(set_to_none=True)
            return
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.25)
        opt.step()

    def eval_step() -> None:
        with torch.no_grad(), precision():
            net.evaluate(x, lengths, spec["samples"], spec["chunk"])

    return train_step if spec["mode"] == "train" else eval_step


def time_steps(step, spec: dict) -> list[float]:
    """Seconds of each of ``spec["steps"]`` steps after ``spec["warmup"]`` untimed ones."""
    device = torch.device(spec.get("device", "cpu"))

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    times = []
    for i in range(spec["warmup"] + spec["steps"]):
        start = sync()
        step()
        if i >= spec["warmup"]:
            times.append(sync() - start)
    return times


def count_row(spec: dict, net, step, tokens: int) -> dict:
    """A row's FLOPs (analytic for the recipes' models, else as counted), its floor at this
    machine's rates, peak memory and where its step's time goes."""
    device = torch.device(spec.get("device", "cpu"))
    s = Sizes(**spec["sizes"])
    flow_layers = len(net.prior.flow.layers) if hasattr(net, "prior") else s.flow_layers
    samples = spec["samples"] if spec["model"] != recipes.LSTM else 1
    train = spec["mode"] == "train"
    analytic = spec["model"] in MODELS
    s_flow = replace(s, flow_layers=flow_layers)
    flops = step_flops(s_flow, spec["model"], tokens, samples, train) if analytic else None
    measured, shapes = count_flops(step, device)
    floor_s = shape_floor(shapes, device, spec.get("precision", "fp32") == "bf16")
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return {
        "flops": measured if flops is None else flops,
        "flops_analytic": flops is not None,
        "flops_measured": measured,
        "floor_s": floor_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": gpu_mb,
        "profile": profile_step(step, device),
        "allocator_loaded": runtime.allocator(),  # checked by the parent against the row's
    }


def run_row(spec: dict) -> dict:
    """Time one row in this process: the median step, and (unless ``count`` is false) its
    FLOPs, floor, memory and profile."""
    from latentflow.runtime import apply_runtime

    torch.manual_seed(0)
    apply_runtime(spec["threads"], malloc=spec["allocator"] == "glibc-tuned")
    net, x, lengths = build_row(spec)
    if spec["mode"] == "train":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        times = time_steps(row_step(spec, net, x, lengths, opt), spec)
    else:
        net.eval()
        times = time_steps(row_step(spec, net, x, lengths), spec)
    tokens = int(lengths.sum())
    timed = {"seconds": statistics.median(times), "tokens": tokens}
    if not spec.get("count", True):  # timing only (benchmarks run side by side with others)
        return timed
    return {**timed, **count_row(spec, net, row_step(spec, net, x, lengths), tokens)}
