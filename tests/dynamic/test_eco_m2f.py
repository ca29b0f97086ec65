"""ECO-M2F early exiting: the gated forward runs each input to its exit and agrees with fixed truncation there, the
gate's targets follow β, and on digits a larger β gives a shallower network."""

from __future__ import annotations

import pytest
import torch

from archlab.data import load_dataset
from archlab.dynamic.eco_m2f import (
    MultiExitViT,
    exit_qualities,
    exit_weighted_loss,
    gate_targets,
    gated_accuracy,
    train_gate,
    train_multi_exit,
)
from archlab.errors import UserError
from archlab.zoo.models.vit import VisionTransformer


def tiny(depth: int = 4) -> MultiExitViT:
    return MultiExitViT(VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32,
                                          depth=depth, num_heads=2))


def test_the_gated_forward_equals_fixed_truncation_at_the_chosen_exit():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(6, 1, 8, 8)
    exits = model.forward_exits(x)
    for i in range(4):
        assert torch.allclose(model.forward_exit(x, i), exits[i], atol=1e-5)
        with torch.no_grad():
            model.gate.head.weight.zero_()
            model.gate.head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(i), 4).float())
        logits, chosen = model.forward_gated(x)
        assert chosen.eq(i).all() and torch.allclose(logits, exits[i], atol=1e-5)
    # mixed choices: each input gets its own exit's logits
    with torch.no_grad():
        model.gate.head.weight.normal_()
    logits, chosen = model.forward_gated(x)
    for j in range(6):
        assert torch.allclose(logits[j], exits[int(chosen[j])][j], atol=1e-5)
    with pytest.raises(UserError, match="exit must be in 0..3"):
        model.forward_exit(x, 4)


def test_gate_targets_and_the_exit_weighted_loss():
    q = torch.tensor([[0.5, 0.9, 0.95, 0.96]])
    assert gate_targets(q, beta=0.0, temperature=0.01).argmax(1).item() == 3
    assert gate_targets(q, beta=0.1, temperature=0.01).argmax(1).item() == 1  # 0.9 - 0.2 beats 0.95 - 0.3
    assert gate_targets(q, beta=1.0, temperature=0.01).argmax(1).item() == 0
    assert torch.allclose(gate_targets(q, 0.1).sum(1), torch.ones(1))
    logits = [torch.randn(5, 3) for _ in range(3)]
    y = torch.randint(0, 3, (5,))
    ce = [torch.nn.functional.cross_entropy(out, y) for out in logits]
    assert exit_weighted_loss(logits, y).item() == pytest.approx(((ce[0] + 2 * ce[1] + 3 * ce[2]) / 6).item())


def test_on_digits_a_larger_beta_gives_a_shallower_network():
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = tiny()
    train_multi_exit(model, data.x_train, data.y_train, epochs=30)
    q = exit_qualities(model, data.x_val, data.y_val)
    assert q.shape == (len(data.x_val), 4)
    depths, accs = [], []
    for beta in (0.0, 0.02, 0.1, 0.5):
        train_gate(model, data.x_val, gate_targets(q, beta, temperature=0.05), epochs=30)
        acc, depth = gated_accuracy(model, data.x_test, data.y_test)
        depths.append(depth)
        accs.append(acc)
    # monotone, up to 0.05 blocks of noise
    assert all(a >= b - 0.05 for a, b in zip(depths, depths[1:], strict=False)), depths
    assert depths[0] > depths[-1] + 1.0, depths
    assert accs[0] > 0.9, accs
