"""The speed-up flags: bf16 autocast (``trainer.precision=bf16-mixed``) keeps every
density term in fp32, and ``compile.flows`` compiles the flow stacks without changing the
model's function or its checkpoint layout. On CPU; the GPU figures are the benchmark's."""

from __future__ import annotations

import json
import math

import pytest
import torch

from latentflow.models.compile import compile_flows
from latentflow.run import train

from .helpers import TINY, compose_config, make_net

PRIORS = ["af_af", "af_scf", "iaf_scf", "ablation_no_af_hidden", "af_only"]


def tiny_model(prior: str | None) -> torch.nn.Module:
    sizes = dict(latent_dim=6, flow_hidden=12, conditioner_hidden=16, width=16, pos_dim=4)
    return make_net(prior, True, num_features=20, max_length=30, **sizes).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, 20, (4, 12), generator=g), torch.tensor([12, 10, 7, 3])


@pytest.mark.parametrize("prior", PRIORS)
def test_bf16_autocast_keeps_the_density_terms_in_fp32(prior):
    model = tiny_model(prior)
    x, lengths = batch()
    torch.manual_seed(2)
    ref = model.elbo(x, lengths, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(2)
        out = model.elbo(x, lengths, 3)
        mu, logvar = model.encode(x, lengths)
        logits = model.decode(mu, lengths)
    assert mu.dtype == logvar.dtype == logits.dtype == torch.float32
    for key in ("recon", "kl", "elbo"):
        assert out[key].dtype == torch.float32
    # bf16 matmuls round to ~3 significant digits, but the noise, log q, the transforms, the
    # log-dets and the sums are fp32: the ELBO stays within 0.1% (bf16 terms: ~0.3-0.6%).
    rel = ((out["elbo"] - ref["elbo"]).abs() / ref["elbo"].abs()).max()
    assert rel < 1e-3, float(rel)
    (-out["objective"].sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bf16_autocast_lstm_baseline_log_prob_is_fp32():
    model = tiny_model(None)
    x, lengths = batch()
    ref = model.log_prob(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.log_prob(x, lengths)
    assert out.dtype == torch.float32
    assert ((out - ref).abs() / ref.abs()).max() < 1e-2


@pytest.mark.parametrize("prior", ["af_af", "iaf_scf"])
def test_compile_flows_keeps_function_and_checkpoint_layout(prior):
    model = tiny_model(prior)
    keys = list(model.state_dict())
    x, lengths = batch()
    torch.manual_seed(3)
    ref = model.elbo(x, lengths, 2)["elbo"]
    names = compile_flows(model, backend="eager")
    assert names == ["prior.flow"]
    assert list(model.state_dict()) == keys  # checkpoints load either way
    torch.manual_seed(3)
    out = model.elbo(x, lengths, 2)["elbo"]
    torch.testing.assert_close(out, ref)


def test_train_with_bf16_and_compiled_flows(tmp_path, real_data_root):
    out = tmp_path / "run"
    overrides = [
        *TINY,
        f"data.root={real_data_root}",
        "experiment=jsb/af_af",
        "trainer.precision=bf16-mixed",
        "compile.flows=true",
        "compile.backend=eager",
    ]
    value, payload = train(compose_config("train", overrides, out))
    assert value is not None and math.isfinite(value)
    saved = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(saved["test"]["nll_paper_nats"])
    assert (out / "config.yaml").read_text().count("bf16-mixed") == 1


def test_unknown_compile_backend_is_a_config_error(tmp_path):
    from latentflow.config_checks import ConfigError, validate_train_config

    cfg = compose_config("train", [*TINY, "compile.flows=true", "compile.backend=nope"])
    with pytest.raises(ConfigError, match="compile.backend"):
        validate_train_config(cfg)


def test_bf16_on_a_cpu_that_emulates_it_is_warned_once(monkeypatch, caplog):
    """AMD EPYC Zen 3 (AVX2 only): a bf16 matmul ran at 0.3 GFLOP/s against 104 in fp32."""
    from latentflow import runtime

    assert runtime.cpu_has_fast_bf16() in (True, False)  # this machine's answer, whichever
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    assert runtime.warn_slow_bf16_on_cpu("bf16-mixed", on_cpu=True)
    assert "trainer.precision=bf16-mixed" in caplog.text and "emulated" in caplog.text
    assert not runtime.warn_slow_bf16_on_cpu("32", on_cpu=True)
    assert not runtime.warn_slow_bf16_on_cpu("bf16-mixed", on_cpu=False)  # a GPU run
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    assert not runtime.warn_slow_bf16_on_cpu("bf16-mixed", on_cpu=True)


def test_auto_precision_picks_bf16_only_where_the_hardware_runs_the_lstms(monkeypatch, caplog):
    from latentflow import runtime

    caplog.set_level("INFO", logger="latentflow.runtime")
    assert runtime.resolve_precision("32-true", on_cpu=True) == "32-true"  # not auto: unchanged
    assert runtime.resolve_precision("bf16-mixed", on_cpu=True) == "bf16-mixed"
    monkeypatch.setattr(runtime, "cpu_has_bf16_lstm", lambda: True)
    assert runtime.resolve_precision("auto", on_cpu=True) == "bf16-mixed"
    assert "trainer.precision=auto -> bf16-mixed" in caplog.text
    # Zen 3 (no bf16 hardware); an AMD EPYC of 2026-12-02 (AVX512-BF16, no bf16 LSTM)
    monkeypatch.setattr(runtime, "cpu_has_bf16_lstm", lambda: False)
    assert runtime.resolve_precision("auto", on_cpu=True) == "32-true"
    assert "trainer.precision=auto -> 32-true" in caplog.text


def test_the_bf16_lstm_probe_agrees_with_a_real_bf16_lstm_call():
    from latentflow import runtime

    runtime.cpu_has_bf16_lstm.cache_clear()
    found = runtime.cpu_has_bf16_lstm()
    if not runtime.cpu_has_fast_bf16():
        assert not found  # no bf16 matmul hardware: never bf16
        return
    lstm = torch.nn.LSTM(8, 8, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(torch.randn(2, 5, 8))
        ran_bf16 = out.dtype == torch.bfloat16
    except RuntimeError:
        ran_bf16 = False
    assert found == ran_bf16


def test_train_with_auto_precision_saves_what_it_chose(tmp_path, real_data_root):
    from latentflow import runtime

    out = tmp_path / "run"
    overrides = [*TINY, f"data.root={real_data_root}", "experiment=jsb/af_af",
                 "trainer.precision=auto"]  # fmt: skip
    value, _ = train(compose_config("train", overrides, out))
    assert value is not None and math.isfinite(value)
    chosen = "bf16-mixed" if runtime.cpu_has_bf16_lstm() else "32-true"
    saved = (out / "config.yaml").read_text()
    assert f"precision: {chosen}" in saved and "precision: auto" not in saved
