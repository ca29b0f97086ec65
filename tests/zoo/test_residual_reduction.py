"""ViT-ResNAS: residual spatial reduction is "pool + zero-pad" plus a learned main path; one masked pass of the
super-network trains every sampled sub-network exactly as separate passes would."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.layers.residual_reduction import MaskedLayerNorm, ResidualSpatialReduction
from archlab.zoo.models.vit_resnas import SubArch, ViTResNAS


def _small(**kw) -> ViTResNAS:
    cfg = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dims=(16, 24, 32), depths=(2, 1, 1),
               num_heads=(2, 2, 3), head_dim=8, mlp_hidden=(32, 48, 64))
    return ViTResNAS(**{**cfg, **kw})


def test_zero_main_path_leaves_pool_plus_zero_pad():
    torch.manual_seed(0)
    sr = ResidualSpatialReduction((4, 6), 5, 8, patch_size=2, num_tokens=1)
    with torch.no_grad():
        for p in (sr.patch_reduce.weight, sr.patch_reduce.bias, sr.token_transform.weight,
                  sr.token_transform.bias, sr.pos_embed):
            p.zero_()
    x = torch.randn(3, 1 + 4 * 6, 5)
    out = sr(x)
    assert out.shape == (3, 1 + 2 * 3, 8)
    # expected, written out: each output patch is the mean of its 2x2 input patches (row-major token order)
    grid = x[:, 1:].reshape(3, 4, 6, 5)
    pooled = torch.stack([grid[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2].mean(dim=(1, 2))
                          for r in range(2) for c in range(3)], dim=1)
    expected = torch.cat([x[:, :1], pooled], dim=1)
    torch.testing.assert_close(out[..., :5], expected)
    assert torch.equal(out[..., 5:], torch.zeros(3, 7, 3))


def test_main_path_is_norm_then_overlapping_conv():
    torch.manual_seed(0)
    sr = ResidualSpatialReduction((4, 4), 6, 6, patch_size=2, num_tokens=0)
    assert (sr.patch_reduce.kernel_size, sr.patch_reduce.stride, sr.patch_reduce.padding) == ((3, 3), (2, 2), (1, 1))
    x = torch.randn(2, 16, 6)
    normed = F.layer_norm(x, (6,), sr.norm.weight, sr.norm.bias, 1e-6)
    conv = sr.patch_reduce(normed.transpose(1, 2).reshape(2, 6, 4, 4)).flatten(2).transpose(1, 2)
    pooled = F.avg_pool2d(x.transpose(1, 2).reshape(2, 6, 4, 4), 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(sr(x), conv + sr.pos_embed + pooled)


def test_reduction_rejects_bad_configuration_and_input():
    with pytest.raises(UserError, match="not divisible by patch_size"):
        ResidualSpatialReduction((5, 4), 8, 8)
    with pytest.raises(UserError, match="zero-pads"):
        ResidualSpatialReduction((4, 4), 8, 4)
    with pytest.raises(UserError, match=r"expected input \(B, 17, 8\)"):
        ResidualSpatialReduction((4, 4), 8, 8)(torch.randn(2, 16, 8))


def test_masked_layer_norm_is_layer_norm_of_the_kept_channels():
    torch.manual_seed(0)
    ln = MaskedLayerNorm(10)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 10)
    mask = torch.zeros(2, 1, 10)
    mask[0, :, :4] = 1
    mask[1, :, :10] = 1
    out = ln(x * mask, mask)
    torch.testing.assert_close(out[0, :, :4], F.layer_norm(x[0, :, :4], (4,), ln.weight[:4], ln.bias[:4], 1e-6))
    assert torch.equal(out[0, :, 4:], torch.zeros(3, 6))
    torch.testing.assert_close(out[1], F.layer_norm(x[1], (10,), ln.weight, ln.bias, 1e-6))


ARCHS = [SubArch((8, 16, 32), (1, 2, 2, 1), (16, 32, 48, 20)),
         SubArch((16, 24, 24), (2, 1, 1, 3), (32, 8, 48, 64)),
         SubArch((12, 12, 20), (1, 1, 2, 2), (4, 16, 24, 32))]


def test_masked_supernet_equals_the_extracted_subnet():
    torch.manual_seed(0)
    model = _small().eval()
    x = torch.randn(4, 1, 8, 8)
    for arch in ARCHS:
        sub = model.extract_subnet(arch)
        assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in model.parameters())
        torch.testing.assert_close(model(x, [arch]), sub(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x, [model.full_arch()]), model(x), atol=1e-6, rtol=1e-6)


def test_one_masked_pass_gives_the_summed_gradients_of_separate_passes():
    torch.manual_seed(0)
    model = _small().double()
    x = torch.randn(9, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (9,))

    def grads(inputs, targets, archs):
        model.zero_grad()
        F.cross_entropy(model(inputs, archs), targets, reduction="sum").backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    joint = grads(x, y, ARCHS)  # example i runs ARCHS[i % 3]
    separate = [grads(x[j::3], y[j::3], [arch]) for j, arch in enumerate(ARCHS)]
    for name, g in joint.items():
        torch.testing.assert_close(g, sum(s[name] for s in separate), atol=1e-6, rtol=0, msg=name)
    # the masks matter: the full network's gradient is a different one
    full = grads(x, y, None)
    assert max((full[n] - joint[n]).abs().max().item() for n in joint) > 1e-3
    # a sub-network's pass gives no gradient to the channels it drops (ARCHS[2] keeps 4 of block 0's 32 hidden)
    g = separate[2]["blocks.0.mlp.fc1.weight"]
    assert torch.equal(g[4:], torch.zeros_like(g[4:])) and g[:4].abs().max() > 0


def test_sub_archs_are_validated():
    model = _small()
    with pytest.raises(UserError, match="num_heads"):
        model(torch.randn(1, 1, 8, 8), [SubArch((8, 16, 32), (3, 1, 1, 1), (8, 8, 8, 8))])
    with pytest.raises(UserError, match="must not decrease"):
        model.extract_subnet(SubArch((16, 12, 32), (1, 1, 1, 1), (8, 8, 8, 8)))


def test_vit_resnas_tiny_matches_the_reference_supernet_size():
    model = zoo.create_model("vit_resnas_tiny")
    # parameters written out from the reference's sr_tiny network_def (patch 14 at 224 px: 16x16 patches)
    dims, depths, heads, hidden, hd = (256, 512, 1024), (7, 7, 4), (4, 8, 12), (768, 1536, 3072), 64

    def block(c, h, f):
        a = h * hd
        return 4 * c + (c * 3 * a + 3 * a) + (a * c + c) + (c * f + f) + (f * c + c)

    def reduction(ci, co, patches):
        return 2 * ci + (co * ci * 9 + co) + (ci * co + co) + co * patches

    expected = 3 * 256 * 14 * 14 + 256 + 256 + 257 * 256
    expected += sum(d * block(c, h, f) for c, d, h, f in zip(dims, depths, heads, hidden, strict=True))
    expected += reduction(256, 512, 64) + reduction(512, 1024, 16) + 2 * 1024 + 1024 * 1000 + 1000
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [type(b).__name__ for b in model.blocks].count("ResidualSpatialReduction") == 2
    with pytest.raises(UserError, match=r"vit_resnas: expected input \(B, 3, 224, 224\)"):
        model(torch.randn(1, 3, 32, 32))


def test_bad_model_configuration():
    with pytest.raises(UserError, match="divisible"):
        _small(img_size=10)
    with pytest.raises(UserError, match="one value per stage"):
        _small(num_heads=(1, 2))


@pytest.mark.slow
def test_small_vit_resnas_learns_digits_with_sampled_subnets():
    from archlab.data import load_dataset

    d = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = _small(embed_dims=(32, 32, 48), num_heads=(2, 2, 2), head_dim=16, mlp_hidden=(64, 64, 96))
    archs = [model.full_arch(), SubArch((16, 24, 32), (1,) * 4, (32, 32, 48, 48))]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(15):
        perm = torch.randperm(len(d.x_train))
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            loss = F.cross_entropy(model(d.x_train[idx], archs), d.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        for arch in archs:
            acc = (model(d.x_test, [arch]).argmax(1) == d.y_test).float().mean().item()
            assert acc >= 0.85, (arch, acc)
