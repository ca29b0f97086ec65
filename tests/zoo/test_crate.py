"""CRATE (white-box transformer): MSSA is attention with one shared projection, ISTA is one proximal-gradient step
of the non-negative LASSO, the published configurations have the paper's parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.crate import ISTA, MSSA
from archlab.zoo.models.crate import CRATE


def test_mssa_equals_multihead_attention_with_tied_qkv() -> None:
    torch.manual_seed(0)
    dim, heads = 24, 3
    mssa = MSSA(dim, heads=heads, dim_head=dim // heads).double().eval()
    mha = nn.MultiheadAttention(dim, heads, bias=True, batch_first=True).double().eval()
    with torch.no_grad():
        u = mssa.qkv.weight
        mha.in_proj_weight.copy_(torch.cat([u, u, u]))  # W_q = W_k = W_v = U
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(mssa.to_out[0].weight)
        mha.out_proj.bias.copy_(mssa.to_out[0].bias)
    x = torch.randn(2, 11, dim, dtype=torch.float64)
    expected, _ = mha(x, x, x, need_weights=False)
    assert torch.allclose(mssa(x), expected, atol=1e-6, rtol=0)


def test_mssa_image_layout_is_the_token_form_on_pixels() -> None:
    torch.manual_seed(0)
    mixer = zoo.create_mixer("mssa", 48)
    assert mixer.heads == 1 and mixer.dim_head == 48  # 48 // 32 -> 1 head, as attention would choose
    x = torch.randn(2, 48, 3, 5)
    tokens = x.flatten(2).transpose(1, 2)
    expected = mixer(tokens).transpose(1, 2).reshape(2, 48, 3, 5)
    assert torch.allclose(mixer(x), expected, atol=1e-6)
    assert zoo.create_mixer("mssa", 128).heads == 4


def test_mssa_rejects_bad_heads() -> None:
    with pytest.raises(UserError, match="mssa: dim 30 is not divisible by num_heads 4"):
        zoo.create_mixer("mssa", 30, num_heads=4)


def _lasso(a: torch.Tensor, z: torch.Tensor, d: torch.Tensor, lambd: float) -> torch.Tensor:
    # 1/2 ||z - D a||^2 + lambda ||a||_1, summed over tokens (rows)
    return 0.5 * ((z - a @ d.t()) ** 2).sum() + lambd * a.abs().sum()


def test_ista_is_one_proximal_gradient_step_of_nonnegative_lasso() -> None:
    torch.manual_seed(0)
    dim = 16
    ista = ISTA(dim).double()
    assert (ista.step_size, ista.lambd) == (0.1, 0.1)  # the reference's defaults
    z = torch.randn(5, 7, dim, dtype=torch.float64)
    d = ista.weight.detach()
    # gradient of the smooth part at a = z, by autograd (not by the closed form the layer uses)
    a = z.clone().requires_grad_(True)
    (0.5 * ((z - a @ d.t()) ** 2).sum()).backward()
    u = z - ista.step_size * a.grad
    # prox of eta*lambda*||.||_1 plus the indicator of a >= 0: shift down by eta*lambda, clip at zero
    expected = torch.clamp(u - ista.step_size * ista.lambd, min=0.0)
    assert torch.allclose(ista(z), expected, atol=1e-6, rtol=0)


def test_ista_step_decreases_the_lasso_objective_when_step_is_below_one_over_lipschitz() -> None:
    torch.manual_seed(1)
    dim = 12
    ista = ISTA(dim).double()
    with torch.no_grad():
        # scale D so that ||D||_2^2 = 1/(2 eta): a proximal step of size eta then cannot increase the objective
        ista.weight.mul_((1 / (2 * ista.step_size)) ** 0.5 / torch.linalg.matrix_norm(ista.weight, ord=2))
    z = torch.relu(torch.randn(20, dim, dtype=torch.float64))  # a feasible start (a = z >= 0)
    d = ista.weight.detach()
    a1 = ista(z)
    assert (a1 >= 0).all()
    assert _lasso(a1, z, d, ista.lambd) < _lasso(z, z, d, ista.lambd)


@pytest.mark.parametrize(("name", "paper_params_m"), [
    ("crate_tiny", 6.09), ("crate_small", 13.12), ("crate_base", 22.80), ("crate_large", 77.64)])
def test_published_parameter_counts(name: str, paper_params_m: float) -> None:
    """The paper's counts (Table 1, millions to two decimals), built on the meta device (no memory for L)."""
    with torch.device("meta"):
        model = zoo.create_model(name)
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 2) == paper_params_m, count
    assert zoo.model_info(name)["family"] == "crate"


def test_reference_state_dict_names() -> None:
    model = CRATE(image_size=8, patch_size=2, num_classes=10, dim=16, depth=2, heads=2, dim_head=8, in_chans=1)
    keys = set(model.state_dict())
    expected = {
        "pos_embedding", "cls_token", "to_patch_embedding.1.weight", "to_patch_embedding.2.weight",
        "to_patch_embedding.3.bias", "transformer.layers.0.0.norm.weight", "transformer.layers.0.0.fn.qkv.weight",
        "transformer.layers.0.0.fn.to_out.0.weight", "transformer.layers.1.1.norm.bias",
        "transformer.layers.1.1.fn.weight", "mlp_head.0.weight", "mlp_head.1.bias"}
    assert expected <= keys
    assert "transformer.layers.0.0.fn.qkv.bias" not in keys
    assert model.pos_embedding.shape == (1, 17, 16)


def test_patchify_orders_pixels_row_column_channel() -> None:
    model = CRATE(image_size=4, patch_size=2, num_classes=3, dim=8, depth=1, heads=1, dim_head=8, in_chans=2)
    img = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    patches = model.to_patch_embedding[0](img)
    assert patches.shape == (1, 4, 8)
    # second patch = rows 0-1, columns 2-3; within it (p1, p2, c)
    expected = torch.stack([img[0, c, p1, 2 + p2] for p1 in range(2) for p2 in range(2) for c in range(2)])
    assert torch.equal(patches[0, 1], expected)


def test_wrong_input_shape_and_bad_config_raise_user_error() -> None:
    model = zoo.create_model("crate_tiny", depth=1)
    with pytest.raises(UserError, match=r"crate_tiny: expected input \(B, 3, 224, 224\), got \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(UserError, match="divisible by patch_size"):
        zoo.create_model("crate_tiny", image_size=30)
    with pytest.raises(UserError, match="pool"):
        zoo.create_model("crate_tiny", pool="max")

