"""FFNet: output and feature strides, the reference's state-dict names, published parameter counts, the up-branch's
top-down additions, bad configurations, and a tiny synthetic-shapes segmentation run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.models.ffnet import FFNet, UpBranch

TINY = dict(layers=(1, 1, 1, 1), branch_chans=(16, 16, 24, 32), stem_chans=(8, 16), head_base_chans=(16, 16, 16, 16),
            head_out_chans=(16, 8, 8, 8), head_mid_chans=16)


def _halve(size: int, times: int) -> int:
    # A 3x3 stride-2 convolution with padding 1 maps n to ceil(n / 2).
    for _ in range(times):
        size = -(-size // 2)
    return size


@pytest.mark.parametrize("size", [(64, 96), (50, 70), (33, 47)])
def test_feature_and_output_strides(size: tuple[int, int]) -> None:
    model = FFNet(num_classes=5, **TINY).eval()
    h, w = size
    x = torch.randn(2, 3, h, w)
    assert model.feature_strides == (4, 8, 16, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        for i, feat in enumerate(feats):
            assert feat.shape[-2:] == (_halve(h, i + 2), _halve(w, i + 2))
        assert model(x).shape == (2, 5, _halve(h, 2), _halve(w, 2))
        model.upsample_logits = True
        assert model(x).shape == (2, 5, h, w)


def test_registered_configurations_strides_and_published_counts() -> None:
    model = zoo.create_model("ffnet40S_BBB_mobile").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 128)).shape == (1, 19, 16, 32)
    # The "_D" models reduce once more (2048x1024 in, 256x128 out): features at strides 8..64, logits at 8.
    d40 = zoo.create_model("ffnet40S_dBBB_mobile").eval()
    assert d40.feature_strides == (8, 16, 32, 64)
    with torch.no_grad():
        assert d40(torch.randn(1, 3, 64, 128)).shape == (1, 19, 8, 16)
    # Qualcomm AI Hub model cards (huggingface.co/qualcomm/FFNet-40S, FFNet-54S; checkpoints ffnet40S_dBBB /
    # ffnet54S_dBBB): 13.9M and 18.0M parameters.
    for net, published in [(d40, 13.9e6), (zoo.create_model("ffnet54S_dBBB_mobile"), 18.0e6)]:
        assert abs(sum(p.numel() for p in net.parameters()) - published) < 0.05e6


def test_state_dict_names_follow_the_reference() -> None:
    keys = zoo.create_model("ffnet40S_BBB_mobile").state_dict()
    for key in ["backbone_model.conv0.weight", "backbone_model.bn1.running_var", "backbone_model.layer1.0.conv1.weight",
                "backbone_model.layer2.0.downsample.1.weight", "head.layers.0.adapter_conv.3.layers.0.weight",
                "head.layers.1.fam_32_sm.layers.1.running_mean", "head.layers.1.fam_4.layers.0.weight",
                "head.layers.3.last_layer.0.bias", "head.layers.3.last_layer.3.weight"]:
        assert key in keys, key
    # Head B: adapter to (64, 128, 128, 256); up-branch outputs (96, 96, 64, 32) -> 288 channels; task B: 256-wide
    # 3x3 then a 3x3 classifier.
    assert keys["head.layers.0.adapter_conv.3.layers.0.weight"].shape == (256, 320, 1, 1)
    assert keys["head.layers.3.last_layer.0.weight"].shape == (256, 288, 3, 3)
    assert keys["head.layers.3.last_layer.3.weight"].shape == (19, 256, 3, 3)
    gpu = zoo.create_model("ffnet18_dAAA").state_dict()
    assert gpu["backbone_model.conv1.weight"].shape == (64, 3, 7, 7)
    assert gpu["head.layers.3.last_layer.3.weight"].shape == (19, 512, 1, 1)


def _feats(channels: tuple[int, ...], size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, size >> i, size >> i, generator=gen) for i, c in enumerate(channels)]


@pytest.mark.parametrize("up_kwargs", [{"mode": "nearest"}, {"mode": "bilinear", "align_corners": True}])
def test_up_branch_adds_upsampled_coarse_features_to_finer_ones(up_kwargs: dict) -> None:
    torch.manual_seed(0)
    branch = UpBranch((8, 12, 16, 20), (6, 6, 5, 4), upsample_kwargs=up_kwargs).eval()
    f4, f8, f16, f32 = _feats((8, 12, 16, 20))

    def up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, like.shape[-2:], **up_kwargs)

    with torch.no_grad():
        x16 = up(branch.fam_32_up(f32), f16) + f16
        x8 = up(branch.fam_16_up(x16), f8) + f8
        expected = (branch.fam_4(up(branch.fam_8_up(x8), f4) + f4), branch.fam_8_sm(x8), branch.fam_16_sm(x16),
                    branch.fam_32_sm(f32))
        got = branch([f4, f8, f16, f32])
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e)
        # The coarsest map reaches the finest output only through the top-down additions.
        changed = branch([f4, f8, f16, f32 + 1.0])[0]
        assert not torch.allclose(changed, got[0])


def test_every_scale_reaches_the_logits() -> None:
    torch.manual_seed(0)
    model = FFNet(num_classes=3, **TINY)
    feats = [f.requires_grad_() for f in _feats((16, 16, 24, 32))]
    model.head(feats).square().sum().backward()
    for i, f in enumerate(feats):
        assert f.grad is not None and f.grad.abs().sum() > 0, f"scale {i} does not reach the logits"


def test_bad_configuration_and_input() -> None:
    with pytest.raises(UserError, match="unknown head_type"):
        FFNet(head_type="D", **TINY)
    with pytest.raises(UserError, match="unknown task"):
        FFNet(task="classification", **TINY)
    with pytest.raises(UserError, match="layers needs four"):
        FFNet(layers=(1, 1, 1))
    with pytest.raises(UserError, match="init"):
        FFNet(init="xavier", **TINY)
    model = FFNet(**TINY)
    with pytest.raises(UserError, match=r"ffnet: expected input \(B, 3, H, W\), got \(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))


def _shapes(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with one square (class 1) and one disk (class 2) each, drawn in their own channel, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for cls in (1, 2):
            r = int(torch.randint(3, 7, (1,), generator=gen))
            cy, cx = (int(v) for v in torch.randint(r, size - r, (2,), generator=gen))
            if cls == 1:
                mask = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            y[i][mask] = cls
    x = torch.stack([(y == 1).float(), (y == 2).float(), torch.zeros(n, size, size)], 1)
    return x + 0.3 * torch.randn(x.shape, generator=gen), y


def _miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 3) -> float:
    ious = []
    for c in range(num_classes):
        union = ((pred == c) | (target == c)).sum().item()
        if union:
            ious.append(((pred == c) & (target == c)).sum().item() / union)
    return sum(ious) / len(ious)


@pytest.mark.slow
def test_tiny_ffnet_segments_synthetic_shapes() -> None:
    x_train, y_train = _shapes(64, seed=0)
    x_test, y_test = _shapes(64, seed=1)
    chance = _miou(torch.zeros_like(y_test), y_test)  # predicting the majority class (background) everywhere
    torch.manual_seed(0)
    model = FFNet(num_classes=3, upsample_logits=True, init="torch", **TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(24):
        for i in range(0, len(x_train), 32):
            loss = F.cross_entropy(model(x_train[i:i + 32]), y_train[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        miou = _miou(model(x_test).argmax(1), y_test)
    assert chance < 0.35
    print(f"synthetic shapes: mIoU {miou:.3f}, chance {chance:.3f}")
    assert miou > 0.6, (miou, chance)
