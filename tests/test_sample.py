"""Generation: sampling paths of every prior and model, the fast no-grad inverses
against the differentiable ones, MIDI round trips, the ``latentflow-sample`` app and the speed
benchmark's plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from latentflow.data.lengths import LengthDistribution
from latentflow.flows import AutoregressiveFlow, AutoregressiveLayer, CouplingLayer
from latentflow.flows.transforms import Affine, NLSq
from latentflow.generation import generate
from latentflow.lightning.module import SequenceLitModule
from latentflow.midi import default_step_beats, midi_to_roll, plot_roll, roll_to_midi
from latentflow.models.position import sequence_mask
from latentflow.models.recurrent import lstm_step
from latentflow.run import sample

from .helpers import (
    TINY,
    VARIANTS,
    compose_config,
    load_benchmark,
    make_net,
    perturb,
    perturbed_prior,
    recipe_components,
    run_benchmark,
)

H, MAXLEN = 3, 12


PRIORS = VARIANTS  # every prior of Tables 1-2, with splines and attention where they apply


def sized_prior(name: str, seed: int = 0):
    """``VARIANTS[name]``'s prior at this file's sizes (``helpers.perturbed_prior``)."""
    return perturbed_prior(name, MAXLEN, H, seed)


def tiny_net(kind: str, name: str | None, text: bool, seed: int = 0) -> torch.nn.Module:
    """A small flow model (prior ``name``) or LSTM baseline with a p(T) loaded."""
    return make_net(name if kind == "flow" else None, text, max_length=MAXLEN, seed=seed).eval()


# ----------------------------------------------------------------- fast paths == reference paths


def test_lstm_step_matches_nn_lstm(float64):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 5, num_layers=2, batch_first=True).eval()
    x = torch.randn(3, 6, 4)
    ref, (h, c) = lstm(x)
    state, outs = None, []
    for t in range(6):
        out, state = lstm_step(lstm, x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.stack([s[0] for s in state]), h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.stack([s[1] for s in state]), c, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="unidirectional"):
        lstm_step(torch.nn.LSTM(4, 5, bidirectional=True), x[:, 0])


def test_nlsq_float_solve_matches_tensor_solve(float64):
    """The Python-float root (batch-1 sampling) is the same arithmetic as the tensor one."""
    torch.manual_seed(0)
    t = NLSq()
    x = torch.cat([5 * torch.randn(300), torch.tensor([0.0, 40.0, -40.0])])
    params = 3.0 * (2 * torch.rand(x.numel(), t.num_params) - 1)
    y, _ = t(x, params)
    floats = [t.solve_float(v, p) for v, p in zip(y.tolist(), params.tolist(), strict=True)]
    torch.testing.assert_close(torch.tensor(floats), t.solve(y, params), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(t.solve(y, params), x, rtol=1e-9, atol=1e-9)


def test_nlsq_solve_matches_differentiable_inverse_at_extremes(float64):
    torch.manual_seed(1)
    t = NLSq()
    y = torch.cat([10 * torch.randn(500), torch.tensor([1e5, -1e5, 1e70, -1e70])])
    params = 2.0 * (2 * torch.rand(y.numel(), 5) - 1)
    x_ref, _ = t.inverse(y, params.requires_grad_())
    x = t.solve(y, params)
    assert torch.isfinite(x).all() and not x.requires_grad
    torch.testing.assert_close(x, x_ref.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transform", [NLSq, Affine])
@pytest.mark.parametrize("num_hidden_layers", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1,), (6,), (2, 3), ()])
def test_af_layer_sampling_path_matches_autograd_path(
    transform, num_hidden_layers, shape, float64
):
    """sample (incremental passes, float solves at batch 1) == the differentiable inverse."""
    torch.manual_seed(2)
    layer = AutoregressiveLayer(5, transform(), 3, 16, num_hidden_layers, reverse=True)
    perturb(layer, 0.5)
    u, ctx = torch.randn(*shape, 5), torch.randn(*shape, 3)
    x_ref, ld_ref = layer.inverse(u, ctx)
    with torch.inference_mode():
        x, ld = layer.sample(u, ctx)
    assert x.shape == u.shape and ld.shape == u.shape[:-1]
    torch.testing.assert_close(x, x_ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, ld_ref.detach(), rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        u_back, ld_fwd = layer(x, ctx)  # and it is the inverse of the density map
    torch.testing.assert_close(u_back, u, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld, -ld_fwd, rtol=1e-9, atol=1e-9)


def test_af_layer_sampling_path_without_context_and_broadcast(float64):
    torch.manual_seed(3)
    layer = AutoregressiveLayer(4, NLSq(), 0, 8, 2)
    perturb(layer, 0.5)
    u = torch.randn(1, 4)
    x, ld = layer.sample(u)
    torch.testing.assert_close(layer(x)[0], u, rtol=1e-10, atol=1e-10)
    stack = AutoregressiveFlow(
        4, 3, transform=NLSq, num_layers=2, hidden_features=8, num_hidden_layers=2
    ).double()
    perturb(stack, 0.5)
    u, ctx = torch.randn(5, 4), torch.randn(3)  # one context for every row
    x_ref, ld_ref = stack.inverse(u, ctx)
    x, ld = stack.sample(u, ctx)
    torch.testing.assert_close(x, x_ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, ld_ref.detach(), rtol=1e-10, atol=1e-10)


def test_coupling_sampling_path_matches_autograd_path(float64):
    torch.manual_seed(4)
    layer = CouplingLayer(5, NLSq(), 3, 16, 2, swap=True)
    perturb(layer, 0.5)
    u, ctx = torch.randn(7, 5), torch.randn(7, 3)
    x_ref, ld_ref = layer.inverse(u, ctx)
    x, ld = layer.sample(u, ctx)
    torch.testing.assert_close(x, x_ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, ld_ref.detach(), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------- priors


@pytest.mark.parametrize("name", PRIORS)
def test_prior_sample_shapes_masks_and_direction(name, float64):
    """z has the requested shape, zero padding, finite log-density; mapping z back through the
    density direction gives exactly the base noise drawn (scaled by the temperature), which is
    only true when each flow was inverted in its own (serial or parallel) direction."""
    prior = sized_prior(name)
    lengths = torch.tensor([5, 2, 3, 1])
    for temperature in (1.0, 0.6):
        with torch.no_grad():
            z, log_p = prior.sample(lengths, temperature, torch.Generator().manual_seed(7))
        assert z.shape == (4, 5, H) and log_p.shape == (4,) and torch.isfinite(log_p).all()
        mask = sequence_mask(lengths)
        assert (z[~mask] == 0).all() and (z[mask].abs() > 0).all()
        eps = temperature * prior._draw_eps(lengths, 1.0, torch.Generator().manual_seed(7))
        eps_back, _ = prior.eps_and_logdet(z, lengths)
        torch.testing.assert_close(eps_back[mask], eps[mask], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(prior.log_prob(z, lengths), log_p, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    "name", ["af_af", "af_scf", "iaf_scf", "af_only", "af_af_spline", "iaf_scf_attention"]
)
def test_prior_sample_without_autograd_equals_with_autograd(name, float64):
    prior = sized_prior(name)
    lengths = torch.tensor([4, 2])
    z_ref, lp_ref = prior.sample(lengths, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        z, lp = prior.sample(lengths, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, z_ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lp, lp_ref.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["af_af", "af_scf", "iaf_scf", "ablation_no_af_hidden"])
@pytest.mark.parametrize("text", [True, False])
def test_trained_model_samples_have_their_sampling_log_density(name, text):
    """After a few optimiser steps (float32, as trained), log p(z|T) returned by sampling is
    finite and equals the prior's log_prob of the sample."""
    net = tiny_net("flow", name, text)
    torch.manual_seed(5)
    lengths = torch.tensor([6, 4, 2])
    if text:
        x = torch.randint(1, 7, (3, 6)) * sequence_mask(lengths)
    else:
        x = (torch.rand(3, 6, 88) < 0.1).float() * sequence_mask(lengths)[..., None]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(5):
        opt.zero_grad()
        (-net.elbo(x, lengths, num_samples=2)["objective"].mean()).backward()
        opt.step()
    net.eval()
    out = net.sample(num_samples=6, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["log_pz"]).all() and out["log_pz"].dtype == torch.float32
    with torch.no_grad():
        again = net.prior.log_prob(out["z"], out["lengths"])
    torch.testing.assert_close(out["log_pz"], again, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------- whole models


@pytest.mark.parametrize("kind,name", [("flow", "af_af"), ("flow", "iaf_scf"), ("lstm", None)])
@pytest.mark.parametrize("text", [True, False])
def test_model_samples_shapes_masks_and_seeds(kind, name, text):
    net = tiny_net(kind, name, text)
    lengths = torch.tensor([5, 1, 3])

    def draw(seed: int, **kw):
        return net.sample(generator=torch.Generator().manual_seed(seed), **kw)

    out = draw(0, lengths=lengths)
    x, mask = out["x"], sequence_mask(lengths)
    assert torch.equal(out["lengths"], lengths)
    if text:
        assert x.shape == (3, 5) and x.dtype == torch.long
        assert (x[~mask] == 0).all() and (x[mask] >= 1).all() and (x[mask] < 7).all()
    else:
        assert x.shape == (3, 5, 88) and set(x.unique().tolist()) <= {0.0, 1.0}
        assert (x[~mask] == 0).all()
    assert torch.equal(draw(0, lengths=lengths)["x"], x), "a fixed seed repeats the sample"
    assert not torch.equal(draw(1, lengths=lengths)["x"], x), "another seed differs"
    drawn = draw(0, num_samples=50)["lengths"]  # T ~ p(T): only lengths with mass
    assert set(drawn.tolist()) <= {2, 3, 5, 8} and len(set(drawn.tolist())) > 1
    cold = draw(0, lengths=lengths, argmax=True)["x"]
    assert cold.shape == x.shape and (cold[~mask] == 0).all()


def test_argmax_emits_the_mode_of_the_decoder():
    net = tiny_net("flow", "af_scf", text=True)
    lengths = torch.tensor([4, 2])
    out = net.sample(lengths=lengths, argmax=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = net.decode(out["z"], lengths)
    logits[..., 0] = -float("inf")  # padding is never emitted
    mode = logits.argmax(-1) * sequence_mask(lengths)
    assert torch.equal(out["x"], mode)


def test_generate_batches_in_order_and_trims():
    net = tiny_net("flow", "af_af", text=True)
    lengths = torch.tensor([3, 5, 1, 4, 2])
    xs, log_pz = generate(net, lengths, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert [len(x) for x in xs] == lengths.tolist() and log_pz.shape == (5,)
    xs_lstm, none = generate(tiny_net("lstm", None, text=False), lengths, batch_size=3)
    assert none is None and [x.shape for x in xs_lstm] == [(int(T), 88) for T in lengths]


# ----------------------------------------------------------------- MIDI


@pytest.mark.parametrize("step_beats", [0.5, 1.0, 0.25])
def test_midi_roundtrip_random_rolls(step_beats, tmp_path):
    rng = np.random.default_rng(0)
    for T in (1, 7, 64):
        roll = rng.random((T, 88)) < 0.15
        roll[-1] = False  # trailing silence must survive
        path = tmp_path / f"r{T}.mid"
        roll_to_midi(roll, path, step_beats=step_beats, tempo_bpm=96, velocity=64, program=19)
        back = midi_to_roll(path, step_beats=step_beats)
        assert back.shape == roll.shape and (back == roll).all()
        mid = mido.MidiFile(str(path))
        notes = [m.note for m in mid.tracks[0] if m.type == "note_on"]
        assert all(21 <= n <= 108 for n in notes)
        assert {m.program for m in mid.tracks[0] if m.type == "program_change"} == {19}


def test_midi_held_notes_become_one_note_and_edges(tmp_path):
    roll = np.zeros((5, 88), dtype=np.float32)
    roll[1:4, 0] = 1.0  # A0 held for 3 steps
    roll[:, 87] = 1.0  # C8 all along
    mid = roll_to_midi(roll)
    ons = [m for m in mid.tracks[0] if m.type == "note_on" and m.velocity > 0]
    assert sorted(m.note for m in ons) == [21, 108]
    assert (midi_to_roll(mid) == (roll > 0)).all()
    silent = np.zeros((4, 88), dtype=bool)
    assert (midi_to_roll(roll_to_midi(silent)) == silent).all()
    assert default_step_beats("jsb_chorales") == 1.0 and default_step_beats("nottingham") == 0.5
    with pytest.raises(ValueError, match=r"\[T, 88\]"):
        roll_to_midi(np.zeros((4, 12)))
    with pytest.raises(ValueError, match="midi.velocity"):
        roll_to_midi(roll, velocity=0)
    with pytest.raises(ValueError, match="midi.step_beats"):
        roll_to_midi(roll, step_beats=1 / 7)


def test_plot_roll_writes_a_png(tmp_path):
    roll = np.random.default_rng(1).random((30, 88)) < 0.1
    plot_roll(roll, tmp_path / "roll.png", "test")
    assert (tmp_path / "roll.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- latentflow-sample


def save_checkpoint(path: Path, kind: str, text: bool, name: str | None = "af_af") -> Path:
    """A checkpoint like latentflow-train writes, without training (no data needed)."""
    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>", "_", "a", "b", "c", "d"] if text else None
    module = SequenceLitModule(
        components=recipe_components(name if kind == "flow" else None, latent_dim=H),
        data={
            "kind": "text" if text else "music",
            "num_features": 7 if text else 88,
            "max_length": MAXLEN,
        },
        data_config={"name": "jsb_chorales"} if not text else {},
        vocab=vocab,
    )
    p_t = LengthDistribution.from_lengths([2, 4, 4, 9], MAXLEN, smoothing=0.0)
    module.net.length_distribution.load_state_dict(p_t.state_dict())
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
    }
    torch.save(checkpoint, path)
    return path


def run_sample(tmp_path: Path, ckpt: Path, out: str, *overrides: str) -> dict:
    cfg = compose_config(
        "sample", [f"ckpt_path={ckpt}", "runtime.threads=1", *overrides], tmp_path / out
    )
    payload = sample(cfg)
    assert (
        json.loads((tmp_path / out / "samples.json").read_text())["lengths"] == payload["lengths"]
    )
    return payload


@pytest.mark.parametrize("kind", ["flow", "lstm"])
def test_sample_app_text(kind, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "m.ckpt", kind, text=True)
    payload = run_sample(tmp_path, ckpt, "a", "num_samples=7", "batch_size=3", "num_print=2")
    lines = (tmp_path / "a" / "samples.txt").read_text().splitlines()
    assert len(lines) == 7 and lines == payload["samples"]
    steps = [len(s.replace("<unk>", "?")) for s in lines]  # one symbol per step
    assert steps == payload["lengths"]
    assert set(payload["lengths"]) <= {2, 4, 9}, "lengths come from the stored p(T)"
    assert all(set(s.replace("<unk>", "")) <= set("abcd ") for s in lines)
    assert any(" " in s for s in lines), "word boundaries '_' are printed as spaces"
    printed = capsys.readouterr().out
    assert "[0] T=" in printed and "[2] T=" not in printed and "wrote 7 samples" in printed
    assert (payload["log_pz"] is None) == (kind == "lstm")
    again = run_sample(tmp_path, ckpt, "b", "num_samples=7", "batch_size=3")
    assert again["samples"] == lines, "a fixed seed gives identical samples"
    other = run_sample(tmp_path, ckpt, "c", "num_samples=7", "seed=1")
    assert other["samples"] != lines
    fixed = run_sample(tmp_path, ckpt, "d", "num_samples=3", "length=11", "argmax=true")
    assert fixed["lengths"] == [11, 11, 11]


@pytest.mark.parametrize("kind", ["flow", "lstm"])
def test_sample_app_music(kind, tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.ckpt", kind, text=False, name="iaf_scf")
    payload = run_sample(tmp_path, ckpt, "a", "num_samples=3", "temperature=0.8")
    out = tmp_path / "a"
    rolls = np.load(out / "rolls.npz")
    assert rolls["rolls"].shape == (3, max(payload["lengths"]), 88)
    assert rolls["lengths"].tolist() == payload["lengths"]
    assert payload["step_beats"] == 1.0  # JSB: quarter notes
    for i, T in enumerate(payload["lengths"]):
        roll = midi_to_roll(out / "midi" / f"sample_{i:03d}.mid", step_beats=1.0)
        assert (roll == rolls["rolls"][i, :T].astype(bool)).all(), "the MIDI file is the roll"
        assert (out / "png" / f"sample_{i:03d}.png").stat().st_size > 0
    again = run_sample(tmp_path, ckpt, "b", "num_samples=3", "temperature=0.8", "midi.plot=false")
    assert (np.load(tmp_path / "b" / "rolls.npz")["rolls"] == rolls["rolls"]).all()
    assert again["lengths"] == payload["lengths"] and not (tmp_path / "b" / "png").exists()


def test_sample_app_rejects_bad_settings(tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.ckpt", "flow", text=True)
    for override, key in [
        ("num_samples=0", "num_samples"),
        ("length=0", "length"),
        ("temperature=0", "temperature"),
        ("batch_size=0", "batch_size"),
    ]:
        with pytest.raises(ValueError, match=key):
            run_sample(tmp_path, ckpt, "x", override)
    with pytest.raises(ValueError, match="ckpt_path"):
        run_sample(tmp_path, tmp_path / "missing.ckpt", "y")


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["ptb/af_af", "jsb/iaf_scf", "ptb/lstm"])
def test_sample_app_on_a_trained_checkpoint(experiment, tmp_path, real_data_root):
    """latentflow-train (tiny) then latentflow-sample on its checkpoint, text and music."""
    from latentflow.run import train

    cfg = compose_config(
        "train",
        [*TINY, f"data.root={real_data_root}", f"experiment={experiment}", "test=false"],
        tmp_path / "run",
    )
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    payload = run_sample(tmp_path, ckpt, "s", "num_samples=4", "length=30")
    if experiment.startswith("ptb"):
        assert len((tmp_path / "s" / "samples.txt").read_text().splitlines()) == 4
        assert all(len(s.replace("<unk>", "?")) == 30 for s in payload["samples"])
    else:
        assert len(list((tmp_path / "s" / "midi").glob("*.mid"))) == 4
        roll = midi_to_roll(tmp_path / "s" / "midi" / "sample_000.mid", payload["step_beats"])
        assert payload["step_beats"] == 1.0 and roll.shape == (30, 88)


# ----------------------------------------------------------------- the benchmark's plumbing


def load_bench():
    return load_benchmark("bench_sample")


def test_bench_crossover():
    bench = load_bench()
    assert bench.crossover([10, 20, 40], [3.0, 2.0, 1.0], [2.0, 2.5, 3.0]) == pytest.approx(
        10 + 10 * 1.0 / 1.5
    )
    assert bench.crossover([10, 20], [1.0, 1.0], [2.0, 3.0]) == 10.0
    assert bench.crossover([10, 20], [3.0, 4.0], [2.0, 3.0]) is None


def test_bench_tiny_run_writes_csv_and_png(tmp_path, monkeypatch, capsys):
    bench = load_bench()
    args = ["--tiny", "--threads", "1", "--allocator", "glibc",
            "--models", "iaf_scf,lstm,lstm_nnlstm", "--out-dir", str(tmp_path)]  # fmt: skip
    run_benchmark(bench, args, monkeypatch)
    rows = (tmp_path / "sample_speed.csv").read_text().splitlines()
    assert rows[0].startswith("task,model,batch_size,length")
    assert len(rows) == 1 + 2 * 3 * (2 + 1)  # tasks x models x (lengths + one batch-64 point)
    assert (tmp_path / "sample_speed.png").read_bytes()[:4] == b"\x89PNG"
    profile = (tmp_path / "sample_profile.csv").read_text().splitlines()  # IAF/SCF, LSTM
    assert profile[0].startswith("model,length,lstm,matmul") and len(profile) == 3
    printed = capsys.readouterr().out
    assert "1 threads" in printed and "glibc" in printed and "LSTM-ref/IAF" in printed


def test_native_rnn_restores_the_setting():
    from latentflow.models.recurrent import native_rnn

    before = torch.backends.mkldnn.enabled
    with native_rnn():
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled == before
