"""The causal self-attention time conditioner: the key/value cache gives exactly the
full recomputation, c_t sees only v_{<t}, gradients are right, and it drops into every prior with
time dynamics from the command line."""

from __future__ import annotations

import pytest
import torch

from latentflow.config_checks import check_components
from latentflow.models import AttentionConditioner
from latentflow.run import train

from .helpers import TINY, compose_config


def conditioner(dropout: float = 0.0) -> AttentionConditioner:
    torch.manual_seed(0)
    net = AttentionConditioner(3, 4, width=8, num_layers=2, num_heads=2, mlp_ratio=2,
                               dropout=dropout)  # fmt: skip
    with torch.no_grad():  # away from the LayerNorm/zero-init regime: every path matters
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net.double().eval()


def test_kv_cache_steps_equal_a_full_recomputation(float64):
    net = conditioner()
    v, pos = torch.randn(3, 40, 3), torch.randn(3, 40, 4)  # 40 > the cache's first capacity
    full = net.parallel(v, pos)
    state, prev = None, None
    for t in range(40):
        c_t, state = net.step(prev, pos[:, t], state)
        # also against recomputing the prefix from scratch at every step (no cache)
        torch.testing.assert_close(c_t, net.parallel(v[:, : t + 1], pos[:, : t + 1])[:, t])
        torch.testing.assert_close(c_t, full[:, t], rtol=1e-12, atol=1e-12)
        prev = v[:, t]
    assert state[0].length == 40


def test_context_depends_on_the_past_only(float64):
    net = conditioner()
    T = 6
    v, pos = torch.randn(1, T, 3), torch.randn(1, T, 4)
    jac = torch.autograd.functional.jacobian(lambda x: net.parallel(x, pos), v)[0, :, :, 0]
    dep = jac.abs().sum((1, 3))  # [t, s]: how much c_t moves with v_s
    for t in range(T):
        for s in range(T):
            if s >= t:
                assert dep[t, s] == 0, f"c_{t} depends on v_{s}"
            else:
                assert dep[t, s] > 0, f"c_{t} ignores v_{s}"


def test_gradients_match_finite_differences(float64):
    net = conditioner()
    v = torch.randn(2, 5, 3, requires_grad=True)
    pos = torch.randn(2, 5, 4)
    assert torch.autograd.gradcheck(lambda x: net.parallel(x, pos), (v,))

    def serial(x):
        state, prev, outs = None, None, []
        for t in range(x.shape[1]):
            c, state = net.step(prev, pos[:, t], state)
            outs.append(c)
            prev = x[:, t]
        return torch.stack(outs, 1)

    assert torch.autograd.gradcheck(serial, (v,))  # the cache under autograd (IAF density)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        AttentionConditioner(3, 4, width=10, num_layers=1, num_heads=4, mlp_ratio=2, dropout=0)


@pytest.mark.parametrize("experiment", ["cpu/jsb/af_af", "cpu/jsb/iaf_scf", "cpu/ptb/af_scf"])
def test_every_prior_with_time_dynamics_takes_it(experiment, tmp_path):
    cfg = compose_config("train", [f"experiment={experiment}", "conditioner=attention"], tmp_path)
    assert cfg.prior.conditioner._target_.endswith("AttentionConditioner")
    check_components(cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=cpu/jsb/iaf_scf", "conditioner=attention"],
        ["experiment=cpu/jsb/af_af", "transform=spline"],
    ],
)
def test_the_issue_commands_train(overrides, tmp_path, real_data_root):
    cfg = compose_config(
        "train", [*TINY, f"data.root={real_data_root}", *overrides, "test=false"], tmp_path
    )
    value, metrics = train(cfg)
    assert value is not None and value == metrics["val"]["nll"]
