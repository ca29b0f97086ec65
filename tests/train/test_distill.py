"""soft_target_kl: Hinton et al.'s T**2-scaled KL from teacher to student, per position, averaged."""

from __future__ import annotations

import pytest
import torch

from archlab.errors import UserError
from archlab.train.distill import soft_target_kl


def _kl_by_hand(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    p_t = torch.softmax(t, -1)
    return (p_t * (torch.log(p_t) - torch.log_softmax(s, -1))).sum(-1).mean()


def test_equals_the_mean_kl_over_positions_with_the_temperature_scaling() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 11, generator=g, dtype=torch.float64), torch.randn(3, 5, 11, generator=g,
                                                                                dtype=torch.float64)
    torch.testing.assert_close(soft_target_kl(s, t), _kl_by_hand(s, t))
    torch.testing.assert_close(soft_target_kl(s, t, temperature=2.5), 2.5 ** 2 * _kl_by_hand(s / 2.5, t / 2.5))
    # shifting logits by a constant changes nothing; equal distributions give zero, others a positive loss
    torch.testing.assert_close(soft_target_kl(s + 3.0, t), soft_target_kl(s, t))
    assert soft_target_kl(t, t).abs().item() < 1e-12 and soft_target_kl(s, t).item() > 0
    # half precision logits are scored in float32
    half = soft_target_kl(s.bfloat16(), t.bfloat16())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.double(), _kl_by_hand(s.bfloat16().double(), t.bfloat16().double()))


def test_gradient_moves_the_student_towards_the_teacher() -> None:
    g = torch.Generator().manual_seed(1)
    t = torch.randn(4, 7, generator=g)
    s = torch.randn(4, 7, generator=g, requires_grad=True)
    before = soft_target_kl(s, t)
    before.backward()
    torch.testing.assert_close(s.grad, (torch.softmax(s, -1) - torch.softmax(t, -1)).detach() / 4)
    assert soft_target_kl(s.detach() - 0.5 * s.grad, t) < before


def test_bad_input_raises_user_errors() -> None:
    with pytest.raises(UserError, match="differ in shape"):
        soft_target_kl(torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(UserError, match="temperature"):
        soft_target_kl(torch.randn(2, 5), torch.randn(2, 5), temperature=0.0)
