"""Correctness of latentflow.flows: log-dets against autograd Jacobians, inverses, masks."""

from __future__ import annotations

import io

import pytest
import torch

from latentflow.flows import (
    Affine,
    AutoregressiveFlow,
    AutoregressiveLayer,
    CouplingFlow,
    CouplingLayer,
    ElementwiseFlow,
    ElementwiseLayer,
    FlowStack,
    NLSq,
)
from latentflow.flows.transforms import ScalarTransform

from .helpers import perturb

TRANSFORMS = [Affine, NLSq]


def random_params(
    transform: ScalarTransform, shape: tuple[int, ...], scale: float
) -> torch.Tensor:
    return scale * (2 * torch.rand(*shape, transform.num_params) - 1)


# ----------------------------------------------------------------- scalar transforms


@pytest.mark.parametrize("cls", TRANSFORMS)
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_scalar_logdet_matches_autograd(cls, scale, float64):
    torch.manual_seed(0)
    t = cls()
    x = 3 * torch.randn(64)
    params = random_params(t, (64,), scale)
    jac = torch.autograd.functional.jacobian(lambda v: t(v, params)[0], x)  # [64, 64]
    _, ld = t(x, params)
    torch.testing.assert_close(ld, jac.diagonal().abs().log(), rtol=1e-9, atol=1e-9)
    off = jac - torch.diag(jac.diagonal())
    assert off.abs().max() == 0  # elementwise


@pytest.mark.parametrize("cls", TRANSFORMS)
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_scalar_inverse_roundtrip_float64(cls, scale, float64):
    torch.manual_seed(1)
    t = cls()
    x = torch.cat([torch.linspace(-50, 50, 401), 5 * torch.randn(400)])
    params = random_params(t, (x.numel(),), scale)
    y, ld = t(x, params)
    x_back, ld_inv = t.inverse(y, params)
    torch.testing.assert_close(x_back, x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("cls", TRANSFORMS)
def test_scalar_inverse_roundtrip_float32(cls):
    torch.manual_seed(2)
    t = cls()
    x = torch.cat([torch.linspace(-50, 50, 401), 5 * torch.randn(400)])
    params = random_params(t, (x.numel(),), 2.0)
    y, _ = t(x, params)
    x_back, _ = t.inverse(y, params)
    assert x_back.dtype == torch.float32
    torch.testing.assert_close(x_back, x, rtol=1e-4, atol=1e-4)


def test_nlsq_inverse_is_the_cubic_root(float64):
    """The inverse solves Supp. B's cubic in eps (checked on the paper's own polynomial)."""
    torch.manual_seed(3)
    t = NLSq()
    params = random_params(t, (200,), 3.0)
    z = 4 * torch.randn(200)
    eps, _ = t.inverse(z, params)
    a, log_b, c_raw, log_d, g = params.unbind(-1)
    b, d = log_b.exp(), log_d.exp()
    c = 8 * 3**0.5 / (9 * d) * b * 0.95 * torch.tanh(c_raw)
    za = z - a
    terms = torch.stack(
        [
            -b * d**2 * eps**3,
            za * d**2 * eps**2,
            -2 * d * g * b * eps**2,
            2 * d * g * za * eps,
            -b * (g**2 + 1) * eps,
            za * (g**2 + 1),
            -c,
        ]
    )
    # Residual relative to the size of the terms that cancel in it.
    assert (terms.sum(0).abs() / terms.abs().sum(0)).max() < 1e-12


def test_nlsq_monotone_finite_and_gradients(float64):
    torch.manual_seed(4)
    t = NLSq()
    params = random_params(t, (50, 1), 10.0).requires_grad_()
    x = torch.linspace(-60, 60, 20001).expand(50, -1).clone().requires_grad_()
    y, ld = t(x, params.expand(-1, x.shape[1], -1))
    assert torch.isfinite(y).all() and torch.isfinite(ld).all()
    assert (y.diff(dim=-1) > 0).all(), "NLSq must be strictly increasing"
    (y.sum() + ld.sum()).backward()
    assert torch.isfinite(params.grad).all() and torch.isfinite(x.grad).all()


def test_nlsq_reduces_to_affine_when_c_is_zero(float64):
    p = torch.tensor([[0.3, -0.7, 0.0, 1.2, -0.4]])
    x = torch.randn(1)
    y, ld = NLSq()(x, p)
    y_aff, ld_aff = Affine()(x, p[:, :2])
    torch.testing.assert_close(y, y_aff)
    torch.testing.assert_close(ld, ld_aff)


def test_nlsq_inverse_gradients_match_finite_differences(float64):
    torch.manual_seed(5)
    t = NLSq()
    y = torch.randn(6, requires_grad=True)
    params = random_params(t, (6,), 2.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda y_, p_: t.inverse(y_, p_)[0], (y, params))


# ----------------------------------------------------------------- vector layers

H, C = 5, 3
STACK = dict(transform=NLSq, num_layers=3, hidden_features=16, num_hidden_layers=2)


def build_layers() -> dict[str, torch.nn.Module]:
    return {
        "af_nlsq": AutoregressiveLayer(H, NLSq(), C, 16, 2),
        "af_affine_reversed": AutoregressiveLayer(H, Affine(), C, 16, 2, reverse=True),
        "af_no_context": AutoregressiveLayer(H, NLSq(), 0, 16, 2),
        "scf_nlsq": CouplingLayer(H, NLSq(), C, 16, 2),
        "scf_swapped": CouplingLayer(H, Affine(), C, 16, 2, swap=True),
        "elementwise": ElementwiseLayer(H, NLSq(), C),
        "elementwise_mlp": ElementwiseLayer(H, NLSq(), C, 8, 1),
        "elementwise_free": ElementwiseLayer(H, NLSq(), 0),
        "stack_af": AutoregressiveFlow(H, C, **STACK),
        "stack_scf": CouplingFlow(H, C, **STACK),
        "stack_elementwise": ElementwiseFlow(
            H, C, transform=Affine, num_layers=2, hidden_features=0, num_hidden_layers=0
        ),
    }


LAYER_NAMES = list(build_layers())


def make_layer(name: str, scale: float = 1.0) -> torch.nn.Module:
    torch.manual_seed(10)
    module = build_layers()[name].double()
    perturb(module, scale)
    return module


@pytest.fixture
def layer(request, float64):
    return make_layer(request.param)


@pytest.mark.parametrize("layer", LAYER_NAMES, indirect=True)
def test_layer_logdet_matches_jacobian(layer, float64):
    ctx = torch.randn(C)
    for _ in range(3):
        x = 2 * torch.randn(H)
        jac = torch.autograd.functional.jacobian(lambda v: layer(v, ctx)[0], x)  # [H, H]
        _, ld = layer(x, ctx)
        torch.testing.assert_close(ld, torch.linalg.slogdet(jac)[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_layer_inverse_roundtrip(name, float64):
    # Tails up to |x| = 50 with moderately scaled networks (the scalar tests cover extremes).
    layer = make_layer(name, scale=0.3)
    ctx = torch.randn(40, C)
    x = torch.cat([10 * torch.randn(20, H), torch.full((10, H), 50.0), torch.full((10, H), -50.0)])
    u, ld = layer(x, ctx)
    x_back, ld_inv = layer.inverse(u, ctx)
    torch.testing.assert_close(x_back, x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-8, atol=1e-8)
    # The sampling path (no autograd, incremental MADE passes) is the same map.
    x_sampled, ld_sampled = layer.sample(u, ctx)
    assert not x_sampled.requires_grad
    torch.testing.assert_close(x_sampled, x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ld_sampled, -ld, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_sample_path_equals_the_differentiable_inverse_at_batch_one(name, float64):
    """Batch 1 takes the Python-float root (``solve_float``) in AF layers: same numbers."""
    layer = make_layer(name, scale=0.5)
    for _ in range(3):
        u, ctx = 2 * torch.randn(1, H), torch.randn(1, C)
        x, ld = layer.inverse(u, ctx)
        x_s, ld_s = layer.sample(u, ctx)
        torch.testing.assert_close(x_s, x.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ld_s, ld.detach(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("layer", LAYER_NAMES, indirect=True)
def test_every_parameter_gets_a_gradient(layer, float64):
    x, ctx = torch.randn(7, H), torch.randn(7, C)
    u, ld = layer(x, ctx)
    (u.square().sum() + ld.sum()).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_layer_save_load_roundtrip(name, float64):
    layer = make_layer(name)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(99)
    clone = build_layers()[name].double()
    clone.load_state_dict(torch.load(buf))
    x, ctx = torch.randn(4, H), torch.randn(4, C)
    torch.testing.assert_close(clone(x, ctx), layer(x, ctx), rtol=0, atol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_autoregressive_jacobian_is_triangular_in_its_order(reverse, float64):
    torch.manual_seed(11)
    layer = AutoregressiveLayer(H, NLSq(), C, 16, 2, reverse=reverse).double()
    perturb(layer)
    ctx = torch.randn(C)
    jac = sum(  # several points, so a dead ReLU at one of them cannot hide a dependency
        torch.autograd.functional.jacobian(lambda v: layer(v, ctx)[0], torch.randn(H)).abs()
        for _ in range(8)
    )
    order = layer.made.order
    rank = torch.empty_like(order)
    rank[order] = torch.arange(H)
    allowed = rank[:, None] >= rank[None, :]  # u_i may depend on x_j only if j comes no later
    assert jac[~allowed].abs().max() == 0
    assert jac[allowed].abs().min() > 0  # and does depend on them (mask is not over-pruned)


@pytest.mark.parametrize("swap", [False, True])
def test_coupling_is_identity_on_conditioning_half(swap, float64):
    torch.manual_seed(12)
    layer = CouplingLayer(H, NLSq(), C, 16, 2, swap=swap).double()
    perturb(layer)
    x, ctx = torch.randn(H), torch.randn(C)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v, ctx)[0], x)
    n = layer.identity_dims
    keep = torch.arange(H - n, H) if swap else torch.arange(n)
    moved = torch.tensor([i for i in range(H) if i not in keep.tolist()])
    torch.testing.assert_close(jac[keep][:, keep], torch.eye(n, dtype=jac.dtype))
    assert jac[keep][:, moved].abs().max() == 0
    # The transformed half depends on the pass-through half (its gradient is not detached).
    assert jac[moved][:, keep].abs().min() > 0


def test_coupling_needs_two_features():
    with pytest.raises(ValueError, match="at least 2"):
        CouplingLayer(1, NLSq(), 0, 8, 2)
    with pytest.raises(ValueError, match="features .* must be >= 2"):
        CouplingFlow(1, **STACK)


def test_hidden_flows_reject_bad_sizes():
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        AutoregressiveFlow(4, 0, **{**STACK, "num_layers": 0})
    with pytest.raises(ValueError, match="hidden_features >= 1"):
        ElementwiseFlow(4, 2, transform=NLSq, num_layers=1, hidden_features=0, num_hidden_layers=1)


def test_stack_reverses_layer_order(float64):
    torch.manual_seed(13)
    stack = FlowStack([AutoregressiveLayer(3, NLSq(), 0, 8, 2), CouplingLayer(3, NLSq(), 0, 8, 2)])
    perturb(stack)
    x = torch.randn(5, 3)
    u, _ = stack(x)
    x_back, _ = stack.inverse(u)
    torch.testing.assert_close(x_back, x)
