"""HyperZ·Z·W: the global branch sees exactly the row and column of each pixel (the hyper-kernels), the local
operator is a depthwise convolution with the kernel the slow net generates from the input, and the mixer works
at every size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.hyperzzw import HyperZZW_2E, HyperZZW_G, HyperZZW_L, linspace_grid


def test_global_branch_sees_the_whole_row_and_column_in_one_layer() -> None:
    """The paper's "full context interaction": one global HyperZ·Z·W layer makes each output pixel depend on every
    pixel of its row and its column (through the row and column hyper-kernels) of its own channel, and on no
    other pixel: the receptive field, read off the gradient, is exactly that cross."""
    torch.manual_seed(0)
    mixer = zoo.create_mixer("hyperzzw", 4, resolution=(5, 6))
    z = torch.randn(1, 4, 5, 6, requires_grad=True)
    for c, i, j in ((0, 0, 0), (2, 3, 4), (3, 4, 5)):
        (grad,) = torch.autograd.grad(mixer.global_op(z)[0, c, i, j], z)
        reached = grad[0].abs() > 0
        cross = torch.zeros(4, 5, 6, dtype=torch.bool)
        cross[c, i, :] = True
        cross[c, :, j] = True
        assert torch.equal(reached, cross), (c, i, j)
    # the explicit product over the row and the column, once
    k_h, k_w = mixer.global_kernels(5, 6)
    out = mixer.global_op(z)
    assert torch.isclose(out[0, 1, 2, 3], (k_h[1, 2] * z[0, 1, :, 3]).sum() + (k_w[1, 3] * z[0, 1, 2, :]).sum(),
                         atol=1e-5)
    assert HyperZZW_G(k_h[None], z).shape == z.shape


def test_mixer_global_branch_uses_row_and_column_hyper_kernels() -> None:
    torch.manual_seed(0)
    mixer = zoo.create_mixer("hyperzzw", 16, resolution=(4, 6))
    z = torch.randn(2, 16, 4, 6)
    k_h, k_w = mixer.global_kernels(4, 6)
    assert k_h.shape == (16, 4, 4) and k_w.shape == (16, 6, 6)
    expected = torch.einsum("cik,bckj->bcij", k_h, z) + torch.einsum("cjk,bcik->bcij", k_w, z)
    assert torch.allclose(mixer.global_op(z), expected, atol=1e-5)
    # the slow net is a function of coordinates only: the hyper-kernel does not depend on z
    k_h2, _ = mixer.global_kernels(4, 6)
    assert torch.equal(k_h, k_h2)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_local_operator_is_depthwise_conv2d_with_the_generated_kernel(kernel_size: int) -> None:
    torch.manual_seed(0)
    op = HyperZZW_L(8, kernel_size=kernel_size)
    with torch.no_grad():
        op.fast_bias.fill_(0.25)
    x1, x2 = torch.randn(3, 8, 7, 7), torch.randn(3, 8, 7, 7)
    kernel = op.kernel(x1)
    assert kernel.shape == (3, 8, kernel_size, kernel_size)
    out = op(x1, x2)
    for b in range(3):
        expected = F.conv2d(x2[b:b + 1], kernel[b].unsqueeze(1), padding=kernel_size // 2, groups=8) + 0.25
        assert torch.allclose(out[b:b + 1], expected, atol=1e-5)


def test_local_kernel_depends_on_the_context_per_sample() -> None:
    torch.manual_seed(0)
    op = HyperZZW_L(8)
    x = torch.randn(2, 8, 5, 5)
    kernel = op.kernel(x)
    assert not torch.allclose(kernel[0], kernel[1])
    # each sample's kernel is its own: the rest of the batch does not change it
    assert torch.allclose(op.kernel(x[1:]), kernel[1:], atol=1e-6)


def test_two_elementwise_variant_is_a_pointwise_second_order_interaction() -> None:
    """The 2E variant ("Z·W·Z", two elementwise products) is the paper's second-order, per-pixel interaction: each
    output depends on its own element only, is even and homogeneous of degree 2 in Z and linear in the
    hyper-kernel, and its gradient is twice the kernel-weighted input."""
    torch.manual_seed(0)
    hk = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(HyperZZW_2E(hk, z)[1, 2, 3, 4], z)
    reached = torch.zeros_like(grad, dtype=torch.bool)
    reached[1, 2, 3, 4] = True
    assert torch.equal(grad != 0, reached)  # no mixing across pixels, channels or samples
    z = z.detach()
    out = HyperZZW_2E(hk, z)
    torch.testing.assert_close(HyperZZW_2E(hk, -z), out, rtol=0, atol=0)  # even in Z
    torch.testing.assert_close(HyperZZW_2E(hk, 3 * z), 9 * out, rtol=1e-12, atol=1e-12)  # degree 2 in Z
    torch.testing.assert_close(HyperZZW_2E(hk + 2 * hk, z), 3 * out, rtol=1e-12, atol=1e-12)  # linear in W
    (g,) = torch.autograd.grad(HyperZZW_2E(hk, z.requires_grad_()).sum(), z)
    torch.testing.assert_close(g, 2 * hk * z, rtol=1e-12, atol=1e-12)


def test_linspace_grid_spans_minus_one_to_one() -> None:
    grid = linspace_grid(3, 2)
    assert grid.shape == (2, 3, 2)
    torch.testing.assert_close(grid[0, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(grid[1, 0], torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize("dim", [16, 48])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (7, 7), (3, 5)])
def test_mixer_shapes_and_gradients(dim: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    mixer = zoo.create_mixer("hyperzzw", dim, resolution=size)
    x = torch.randn(2, dim, *size, requires_grad=True)
    out = mixer(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    assert mixer.slow_net_g.output_linear.weight.grad.abs().sum() > 0


def test_bad_configuration_raises_user_error() -> None:
    with pytest.raises(UserError, match="hyperzzw: kernel_size must be a positive odd integer, got 4"):
        zoo.create_mixer("hyperzzw", 16, kernel_size=4)
    with pytest.raises(UserError, match="hyperzzw: hidden_channels"):
        zoo.create_mixer("hyperzzw", 16, hidden_channels=0)
