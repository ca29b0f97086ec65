"""LRCN: on clips whose class is which glyphs appear *and* in which order, LRCN, trained for the same epochs as the
frame-averaged CNN (same frames and CNN, no LSTM), learns both while the averaged CNN learns only which glyphs
appear; per-step outputs are causal in time; aggregation; registry and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.models.lrcn import LRCN

FRAMES, SIZE, EPOCHS = 6, 16, 20
# three 5x5 glyphs: a "1" (vertical bar with a foot), a "0" (ring) and a "+"
ONE = torch.tensor([[0, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0]]).float()
ZERO = torch.tensor([[0, 1, 1, 1, 0], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [0, 1, 1, 1, 0]]).float()
PLUS = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]).float()
# class -> (first glyph, second glyph): which glyphs appear separates {0, 1} from {2, 3}; only the order separates
# 0 from 1 and 2 from 3
CLASSES = ((ONE, ZERO), (ZERO, ONE), (ONE, PLUS), (PLUS, ONE))


def _clips(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: "1" then "0"; class 1: "0" then "1"; class 2: "1" then "+"; class 3: "+" then "1". The glyph moves;
    the switch frame is 2, 3 or 4 of 6, so the two classes of a pair show each glyph equally often: a model blind
    to order can tell the pairs apart but not the classes within a pair (at best 50 %), one that sees order can
    reach 100 %."""
    labels = torch.randint(len(CLASSES), (n,), generator=gen)
    clips = 0.2 * torch.randn(n, FRAMES, 1, SIZE, SIZE, generator=gen)
    switch = torch.randint(2, 5, (n,), generator=gen)
    pos = torch.randint(0, SIZE - 5, (n, 2), generator=gen)
    vel = torch.randint(-1, 2, (n, 2), generator=gen)
    for i in range(n):
        first, second = CLASSES[labels[i]]
        for t in range(FRAMES):
            r, c = (pos[i] + vel[i] * t).clamp(0, SIZE - 5).tolist()
            clips[i, t, 0, r:r + 5, c:c + 5] += first if t < switch[i] else second
    return clips, labels


def _train(model: LRCN, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def test_lrcn_learns_frame_order_the_frame_averaged_cnn_learns_only_appearance(one_thread) -> None:
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = _clips(768, gen)
    x_test, y_test = _clips(400, gen)
    accs = {}
    # LRCN predicts from its last step (the paper's alternative to averaging); the baseline averages over frames,
    # as the paper's single-frame baseline does at test time. Both train for the same epochs.
    for temporal, aggregate in (("lstm", "last"), ("none", "mean")):
        torch.manual_seed(0)
        model = LRCN(num_classes=len(CLASSES), in_chans=1, cnn_channels=(8, 16), feature_dim=32, hidden_size=32,
                     temporal=temporal, aggregate=aggregate)
        _train(model, x_train, y_train, EPOCHS)
        with torch.no_grad():
            pred = model(x_test).argmax(1)
        accs[temporal] = (pred == y_test).float().mean().item()
        # which pair ({0, 1} or {2, 3}) the prediction falls in: the appearance signal both models can use
        accs[temporal + " pair"] = (pred // 2 == y_test // 2).float().mean().item()
        if temporal == "none":
            with torch.no_grad():  # order-blind: reversing the clip leaves its prediction unchanged
                assert torch.allclose(model(x_test[:20]), model(x_test[:20].flip(1)), atol=1e-5)
    print(accs)
    assert accs["none pair"] >= 0.8, accs  # the baseline is trained well enough to use what it can see
    assert accs["lstm pair"] >= 0.9, accs
    assert accs["lstm"] >= 0.9, accs  # LRCN also learns the order, in the same epochs
    assert accs["lstm"] >= accs["none"] + 0.3, accs


def test_per_step_outputs_are_causal_and_aggregated() -> None:
    torch.manual_seed(0)
    model = LRCN(num_classes=3, in_chans=1, cnn_channels=(4, 8), feature_dim=8, hidden_size=8).eval()
    x = torch.randn(2, 5, 1, 12, 12)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    with torch.no_grad():
        steps, steps_y = model.forward_steps(x), model.forward_steps(y)
        assert torch.equal(steps[:, :3], steps_y[:, :3])
        assert (steps[:, 3:] - steps_y[:, 3:]).abs().max() > 1e-6
        probs = model(x).exp()
        assert torch.allclose(probs, steps.softmax(-1).mean(1), atol=1e-6)  # average of per-step predictions
        assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-6)
        model.aggregate = "last"
        assert torch.equal(model(x), steps[:, -1])


def test_registered_model_and_bad_input() -> None:
    model = zoo.create_model("lrcn_tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 8, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(UserError, match=r"\(B, T, 3, H, W\)"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(UserError, match="aggregate"):
        LRCN(aggregate="max")
