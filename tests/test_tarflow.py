"""TarFlowLM's prior: stacked causal-Transformer flow blocks in time, the direction reversed
between blocks. Brute-force Jacobians (log-det and time structure per block and for the
stack), cached serial sampling against the parallel density pass, padding, gradients."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from latentflow.flows import (
    AutoregressiveFlow,
    CouplingFlow,
    MixtureLogisticCDF,
    NLSq,
    standard_normal_log_prob,
)
from latentflow.models import AttentionConditioner, TarFlowPrior
from latentflow.models.position import sequence_mask
from latentflow.models.recurrent import reverse_within_length

from .helpers import perturb

H, T, MAXLEN = 3, 5, 8


def tarflow(num_blocks: int = 2, alternate: bool = True, hidden=AutoregressiveFlow, seed=0):
    torch.manual_seed(seed)
    prior = TarFlowPrior(
        H,
        MAXLEN,
        flow=partial(hidden, transform=partial(MixtureLogisticCDF, num_components=3),
                     num_layers=2, hidden_features=8, num_hidden_layers=1),
        conditioner=partial(AttentionConditioner, width=8, num_layers=1, num_heads=2,
                            mlp_ratio=2, dropout=0.0),
        pos_dim=2,
        num_blocks=num_blocks,
        alternate=alternate,
    )  # fmt: skip
    prior = prior.double()
    perturb(prior, 0.5)  # 0.7 sends a chain of mixture inverses to 1e30 and beyond
    return prior.eval()


def jacobian(fn, z: torch.Tensor) -> torch.Tensor:
    """[t, i, s, j] = d fn(z)_{t,i} / d z_{s,j} for one sequence z [T, H]."""
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.view(1, *z.shape))[0], z.reshape(-1))
    return jac.reshape(*z.shape, *z.shape)


def dependence(fn, length: int) -> torch.Tensor:
    """[t, s]: how much output step t moves with input step s (three random points)."""
    return sum(jacobian(fn, torch.randn(length, H)).abs().sum((1, 3)) for _ in range(3))


@pytest.mark.parametrize("num_blocks,hidden", [(1, AutoregressiveFlow), (3, CouplingFlow)])
def test_log_prob_equals_bruteforce_jacobian(num_blocks, hidden, float64):
    prior = tarflow(num_blocks, hidden=hidden)
    lengths = torch.tensor([T])
    z = torch.randn(1, T, H)
    eps = prior.eps_and_logdet(z, lengths)[0]
    jac = jacobian(lambda v: prior.eps_and_logdet(v, lengths)[0], z[0]).reshape(T * H, T * H)
    expected = standard_normal_log_prob(eps.reshape(-1)) + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(prior.log_prob(z, lengths)[0], expected, rtol=1e-10, atol=1e-10)


def test_a_padded_sequence_log_prob_equals_its_bruteforce_jacobian(float64):
    """Length 3 in a batch padded to T = 5, three blocks (two forwards, one reversed within the
    length): log p is N(eps) over the valid steps plus the slogdet of the valid steps' Jacobian."""
    prior = tarflow(3)
    L, lengths = 3, torch.tensor([3])
    z = torch.randn(1, T, H)
    z[0, L:] = 0.0

    def eps_valid(v):  # the valid steps in, the valid steps out, the padding held at 0
        full = torch.cat([v, torch.zeros(1, T - L, H)], 1)
        return prior.eps_and_logdet(full, lengths)[0][:, :L]

    eps = eps_valid(z[:, :L])
    jac = jacobian(eps_valid, z[0, :L]).reshape(L * H, L * H)
    expected = standard_normal_log_prob(eps.reshape(-1)) + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(prior.log_prob(z, lengths)[0], expected, rtol=1e-10, atol=1e-10)


def test_each_block_sees_one_side_and_the_stack_both(float64):
    """Block 0 runs forwards: its step t depends on steps <= t only; block 1 runs backwards
    within each length: on steps >= t only (padding after the length is never reached); two
    alternating blocks make every step depend on every other; without ``alternate`` the stack
    stays causal."""
    prior = tarflow(2)
    L = 4  # a sequence of 4 in a batch padded to T = 5
    lengths = torch.tensor([L])
    pos = prior.position(lengths, T)
    index = reverse_within_length(lengths, T)
    forwards = dependence(lambda v: prior.blocks[0](v, pos, index), T)
    backwards = dependence(lambda v: prior.blocks[1](v, pos, index), T)[:L, :L]
    for t in range(L):
        for s in range(L):
            assert (forwards[t, s] > 0) == (s <= t), (t, s)
            assert (backwards[t, s] > 0) == (s >= t), (t, s)
    both = dependence(lambda v: prior.eps_and_logdet(v, lengths), T)[:L, :L]
    assert (both > 0).all()
    one_way = tarflow(2, alternate=False)
    causal = dependence(lambda v: one_way.eps_and_logdet(v, lengths), T)[:L, :L]
    assert ((causal > 0) == torch.ones(L, L).tril().bool()).all()


def test_cached_serial_sampling_inverts_the_parallel_pass(float64):
    """Each block's sampling (one position per step against the conditioner's key/value cache)
    is the inverse of its density pass (one parallel causal pass), reversed blocks included,
    over a batch of mixed lengths; the stack's sample has the log-density log_prob gives."""
    prior = tarflow(3)
    lengths = torch.tensor([T, 2, 4])
    pos = prior.position(lengths, T)
    index = reverse_within_length(lengths, T)
    mask = sequence_mask(lengths, T)
    for block in prior.blocks:
        u = torch.randn(3, T, H)
        v, inv_ld = block.sample(u, pos, index)
        u_back, ld = block(v, pos, index)
        torch.testing.assert_close(u_back[mask], u[mask], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(inv_ld[mask], -ld[mask], rtol=1e-9, atol=1e-9)
    z, log_p = prior.sample(lengths, generator=torch.Generator().manual_seed(1))
    eps_drawn = prior._draw_eps(lengths, 1.0, torch.Generator().manual_seed(1))
    eps, _ = prior.eps_and_logdet(z, lengths)
    torch.testing.assert_close(eps[mask], eps_drawn[mask], rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(prior.log_prob(z, lengths), log_p, rtol=1e-8, atol=1e-8)
    assert (z[1, 2:] == 0).all() and (z[2, 4:] == 0).all()


def test_a_sequence_alone_equals_it_in_a_padded_batch(float64):
    prior = tarflow(2)
    lengths = torch.tensor([3, T])
    z = torch.randn(2, T, H)
    garbage = z.clone()
    garbage[0, 3:] = 1e3 * torch.randn(T - 3, H)
    torch.testing.assert_close(prior.log_prob(garbage, lengths), prior.log_prob(z, lengths))
    alone = prior.log_prob(z[:1, :3], lengths[:1])
    torch.testing.assert_close(alone, prior.log_prob(z, lengths)[:1])


def test_gradients_match_finite_differences(float64):
    prior = tarflow(2, hidden=CouplingFlow)
    z = torch.randn(2, 4, H, requires_grad=True)
    lengths = torch.tensor([4, 3])
    assert torch.autograd.gradcheck(lambda v: prior.log_prob(v, lengths), (z,))


def test_nlsq_blocks_and_bad_settings(float64):
    """Any hidden flow and transform fit in a block (here the 2019 NLSq)."""
    torch.manual_seed(0)
    prior = TarFlowPrior(
        H, MAXLEN, pos_dim=2, num_blocks=2,
        flow=partial(AutoregressiveFlow, transform=NLSq, num_layers=1, hidden_features=8,
                     num_hidden_layers=1),
        conditioner=partial(AttentionConditioner, width=8, num_layers=1, num_heads=2,
                            mlp_ratio=2, dropout=0.0),
    ).double()  # fmt: skip
    z, log_p = prior.sample(torch.tensor([4, 2]))
    torch.testing.assert_close(prior.log_prob(z, torch.tensor([4, 2])), log_p)
    with pytest.raises(ValueError, match="num_blocks"):
        TarFlowPrior(H, MAXLEN, pos_dim=2, num_blocks=0, flow=None, conditioner=None)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["cpu/ptb/tarflowlm", "cpu/jsb/tarflowlm"])
def test_tarflowlm_recipe_trains_evaluates_and_samples(experiment, tmp_path, real_data_root):
    """A ``debug=tiny`` run of each TarFlowLM recipe through the Python API: train, evaluate the
    best checkpoint again (the same numbers) and sample from it."""
    import json

    from latentflow.run import evaluate, sample, train

    from .helpers import TINY, compose_config

    root = f"data.root={real_data_root}"
    cfg = compose_config("train", [*TINY, root, f"experiment={experiment}"], tmp_path / "run")
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    best = metrics["best_checkpoint"]
    assert metrics["paper"] == {} and metrics["test"]["num_sequences"] > 0
    cfg = compose_config("eval", [f"ckpt_path={best}", root, "runtime.threads=1"], tmp_path / "e")
    evaluate(cfg)
    again = json.loads((tmp_path / "e" / "metrics.json").read_text())
    for key, value in metrics["test"].items():
        assert again["test"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    overrides = [f"ckpt_path={best}", "runtime.threads=1", "num_samples=3", "length=12"]
    payload = sample(compose_config("sample", overrides, tmp_path / "s"))
    assert payload["lengths"] == [12, 12, 12]
