"""MuE: thresholds above 1 give the full network, -1 runs one layer per stack (counted by hooks), exits equal fixed
truncation, token groups exit separately, and on digits captioning a threshold skips ≥ 30 % of the layers while
keeping ≥ 97 % of the full model's exact-match accuracy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.data import load_dataset
from archlab.dynamic.mue import (
    CLASS_NAMES,
    EOS,
    PAD,
    VOCAB,
    MuETransformer,
    decode_tokens,
    digits_captions,
    layer_similarity,
    layerwise_loss,
    sweep,
    train_mue,
)
from archlab.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: a second thread only waits on a loaded machine


def tiny() -> tuple[MuETransformer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = MuETransformer().eval()
    return model, torch.randn(5, 16, 4), torch.randint(0, len(VOCAB), (5, 6))


class Counter:
    """Forward hooks on every layer: the input rows and tokens each layer actually computed."""

    def __init__(self, model: MuETransformer) -> None:
        self.enc_inputs, self.enc_tokens = [0] * len(model.encoder), [0] * len(model.encoder)
        self.dec_tokens = [0] * len(model.decoder)
        for i, layer in enumerate(model.encoder):
            layer.register_forward_hook(self._enc(i))
        for i, layer in enumerate(model.decoder):
            layer.register_forward_hook(self._dec(i))

    def _enc(self, i: int):
        def hook(module, args, out):
            self.enc_inputs[i] += out.shape[0]
            self.enc_tokens[i] += out.shape[0] * out.shape[1]
        return hook

    def _dec(self, i: int):
        def hook(module, args, out):
            self.dec_tokens[i] += out.shape[0] * out.shape[1]
        return hook


def test_thresholds_above_one_give_the_full_forward_and_use_every_layer():
    model, src, tgt = tiny()
    out = model.forward_dynamic(src, tgt, 1.5, 1.5)
    with torch.no_grad():
        assert torch.allclose(out.logits, model(src, tgt), atol=1e-5, rtol=0)
    assert out.enc_layers.eq(4).all() and out.dec_layers.eq(4).all()
    model.double()  # the same to 1e-6 and beyond, once float32 rounding is out of the way
    out = model.forward_dynamic(src.double(), tgt, 1.5, 1.5)
    with torch.no_grad():
        assert torch.allclose(out.logits, model(src.double(), tgt), atol=1e-6, rtol=0)
    gen = model.generate(src.double())  # never exits by default; greedy tokens agree with teacher forcing on them
    with torch.no_grad():
        forced = model(src.double(), torch.cat([torch.ones(5, 1, dtype=torch.long), gen.tokens[:, :-1]], 1))
    steps = gen.dec_layers > 0
    assert torch.equal(forced.argmax(-1)[steps], gen.tokens[steps])
    assert gen.dec_layers[steps].eq(4).all()


def test_threshold_minus_one_runs_exactly_one_layer_per_stack():
    model, src, tgt = tiny()
    counter = Counter(model)
    out = model.forward_dynamic(src, tgt, -1.0, -1.0)
    assert counter.enc_inputs == [5, 0, 0, 0] and counter.enc_tokens == [80, 0, 0, 0]
    assert counter.dec_tokens == [30, 0, 0, 0]
    assert out.enc_layers.eq(1).all() and out.dec_layers.eq(1).all()
    # an exit equals fixed truncation at it: the (encoder depth, decoder depth) logits of the layer-wise forward
    with torch.no_grad():
        grid = model.forward_layerwise(src, tgt)
    assert torch.allclose(out.logits, grid[0, 0], atol=1e-5)
    assert torch.allclose(model.forward_dynamic(src, tgt, -1.0, 2.0).logits, grid[0, -1], atol=1e-5)
    assert torch.allclose(model.forward_dynamic(src, tgt, 2.0, -1.0).logits, grid[-1, 0], atol=1e-5)
    counter = Counter(model)
    gen = model.generate(src, -1.0, -1.0)
    generated = int(gen.dec_layers.gt(0).sum())
    assert counter.enc_inputs == [5, 0, 0, 0] and counter.dec_tokens == [generated, 0, 0, 0]


def test_token_groups_exit_separately():
    model, src, tgt = tiny()
    groups = torch.zeros(5, 16, dtype=torch.long)
    groups[:, 10:] = 1  # "image" tokens 0..9, "text" tokens 10..15
    counter = Counter(model)
    out = model.forward_dynamic(src, tgt, [-1.0, 2.0], 2.0, groups=groups)
    assert out.enc_layers.tolist() == [[1, 4]] * 5
    assert counter.enc_tokens == [80, 30, 30, 30]  # after layer 1 only the 6 text tokens are computed
    # exited tokens keep their exit state: the same as running the groups' tokens by hand
    with torch.no_grad():
        h = model._embed_src(src)
        h = model.encoder[0](h)
        for layer in model.encoder[1:]:
            h = torch.cat([h[:, :10], layer(h, torch.arange(10, 16))], 1)
        ref = model._decode(model.enc_norm(h), tgt, every_layer=False)[-1]
    assert torch.allclose(out.logits, ref, atol=1e-5)
    one = model.forward_dynamic(src, tgt, 2.0, 2.0, groups=groups)  # one threshold for every group
    assert one.enc_layers.eq(4).all()


def test_layer_similarity_matches_a_hand_computation():
    new = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]])
    old = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]]])
    cos = [1.0, 1 / math.sqrt(2), -1.0]
    assert layer_similarity(new, old).item() == pytest.approx(sum(cos) / 3)
    groups = torch.tensor([[0, 0, 1]])
    assert layer_similarity(new, old, groups, 2).tolist()[0] == pytest.approx([(cos[0] + cos[1]) / 2, cos[2]])


def test_layerwise_loss_is_the_mean_cross_entropy_over_exit_pairs():
    torch.manual_seed(0)
    grid = torch.randn(2, 3, 4, 5, 7)
    tgt = torch.randint(1, 7, (4, 5))
    tgt[:, 3:] = PAD
    keep = tgt != PAD
    ce = torch.stack([torch.stack([F.cross_entropy(grid[e, d][keep], tgt[keep]) for d in range(3)])
                      for e in range(2)])
    assert layerwise_loss(grid, tgt).item() == pytest.approx(ce.mean().item(), rel=1e-5)
    w = torch.arange(6.0).view(2, 3)
    assert layerwise_loss(grid, tgt, w).item() == pytest.approx(((w * ce).sum() / w.sum()).item(), rel=1e-5)


def test_on_digits_a_threshold_skips_30_percent_of_layers_at_97_percent_of_full_accuracy():
    data = load_dataset("digits", seed=0)
    src, tgt_in, tgt_out = digits_captions(data.x_train, data.y_train)
    assert src.shape == (len(data.x_train), 16, 4) and tgt_in.shape == tgt_out.shape == (len(src), 6)
    assert decode_tokens(tgt_out[:5]) == [CLASS_NAMES[int(y)] for y in data.y_train[:5]]
    torch.manual_seed(0)
    model = MuETransformer()
    train_mue(model, src, tgt_in, tgt_out, epochs=15, batch_size=32, lr=3e-3)
    test_src, _, test_out = digits_captions(data.x_test, data.y_test)
    rows = sweep(model, (test_src, test_out), [0.97, 0.95, 0.9, 0.8], latency_inputs=24, repeats=1)
    full = rows[0]
    assert full["layers_skipped"] == 0 and full["accuracy"] >= 0.85, full
    good = [r for r in rows if r["layers_skipped"] >= 0.3 and r["accuracy_ratio"] >= 0.97]
    assert good, rows
    best = max(good, key=lambda r: (r["layers_skipped"], r["accuracy"]))
    assert best["pareto"], rows  # nothing both more accurate and cheaper
    assert best["latency_ratio"] < 0.95, rows  # skipped layers are not run: batch-1 latency drops


def test_bad_input_raises_a_one_line_user_error():
    model, src, tgt = tiny()
    cases = [
        lambda: model.forward_dynamic(src[..., :3], tgt, 0.9, 0.9),
        lambda: model.forward_dynamic(src[0], tgt, 0.9, 0.9),
        lambda: model.forward_dynamic(torch.randn(5, 17, 4), tgt, 0.9, 0.9),
        lambda: model.forward_dynamic(src, tgt.float(), 0.9, 0.9),
        lambda: model.forward_dynamic(src, tgt[:3], 0.9, 0.9),
        lambda: model.forward_dynamic(src, tgt.clamp(max=EOS) + 100, 0.9, 0.9),
        lambda: model.forward_dynamic(src, tgt, "0.9", 0.9),
        lambda: model.forward_dynamic(src, tgt, 0.9, True),
        lambda: model.forward_dynamic(src, tgt, 0.9, [0.9, 0.9]),
        lambda: model.forward_dynamic(src, tgt, 0.9, float("nan")),
        lambda: model.forward_dynamic(src, tgt, [0.9, 0.9], 0.9, groups=torch.zeros(5, 15, dtype=torch.long)),
        lambda: model.forward_dynamic(src, tgt, [0.9, 0.9], 0.9, groups=torch.full((5, 16), 2)),
        lambda: model.generate(src, 0.9, 0.9, max_len=7),
        lambda: model(src, torch.zeros(5, 7, dtype=torch.long)),
        lambda: sweep(model, (src,), [0.9]),
    ]
    for case in cases:
        with pytest.raises(UserError) as err:
            case()
        assert "\n" not in str(err.value) and str(err.value).startswith(("MuE", "sweep"))
