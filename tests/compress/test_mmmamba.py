"""mmMamba: the seeded Mamba-2 layer's forms, the seeding, the three stages and the hybrid on an image + text task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.compress.mmmamba import (
    SeededMamba2,
    causal_linear_attention,
    convert,
    hybrid_layers,
    mmmamba_distill,
    seed_from_attention,
)
from archlab.errors import UserError
from archlab.zoo.mixers.causal_attention import CausalSelfAttention


def _attention(d: int = 16, heads: int = 4, seed: int = 0) -> CausalSelfAttention:
    torch.manual_seed(seed)
    return CausalSelfAttention(d, heads).double()


def test_seeded_layer_without_decay_conv_and_gate_is_causal_linear_attention():
    attn = _attention()
    layer = seed_from_attention(attn, conv=False, gnorm=False, decay=False)
    x = torch.randn(3, 11, 16, dtype=torch.float64)
    # the linear attention written from the teacher's fused projection, token by token
    q, k, v = attn.Wqkv(x).split(16, dim=-1)
    q, k, v = (t.unflatten(-1, (4, 4)) for t in (q, k, v))
    rows = []
    for t in range(11):
        scores = torch.einsum("bhd,bshd->bsh", q[:, t], k[:, :t + 1])
        rows.append(torch.einsum("bsh,bshd->bhd", scores, v[:, :t + 1]).flatten(1))
    want = attn.out_proj(torch.stack(rows, dim=1))
    torch.testing.assert_close(layer(x), want, atol=1e-6, rtol=0)
    # and the helper is the same sum in matrix form
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    torch.testing.assert_close(attn.out_proj(causal_linear_attention(qh, kh, vh).transpose(1, 2).flatten(2)), want,
                               atol=1e-6, rtol=0)


def test_seeding_copies_the_projections_and_the_convolution_starts_as_the_identity():
    attn = _attention()
    layer = seed_from_attention(attn)
    w, b = attn.Wqkv.weight, attn.Wqkv.bias
    for i, proj in enumerate((layer.q_proj, layer.k_proj, layer.v_proj)):  # C <- W_q, B <- W_k, x <- W_v
        assert torch.equal(proj.weight, w[i * 16:(i + 1) * 16]) and torch.equal(proj.bias, b[i * 16:(i + 1) * 16])
    assert torch.equal(layer.o_proj.weight, attn.out_proj.weight)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q, k, v = layer.qkv(x)  # after the identity convolution: SiLU of the projections
    torch.testing.assert_close(q.flatten(-2), F.silu(layer.q_proj(x)))
    torch.testing.assert_close(v.flatten(-2), F.silu(layer.v_proj(x)))
    assert torch.all(torch.nn.functional.softplus(layer.dt_bias) >= 1e-3 - 1e-9)
    assert torch.all(torch.nn.functional.softplus(layer.dt_bias) <= 0.1 + 1e-9)
    assert torch.equal(layer.in_proj.weight, torch.zeros_like(layer.in_proj.weight))


def test_the_chunked_scan_equals_the_selective_recurrence():
    torch.manual_seed(1)
    layer = SeededMamba2(16, 4, chunk_size=4).double()
    with torch.no_grad():  # a non-trivial selective dt
        layer.in_proj.weight.normal_(std=0.5)
        layer.A_log_bias.normal_()
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    q, k, v = layer.qkv(x)
    dt = F.softplus(layer.in_proj(x) + layer.dt_bias)
    a = -torch.exp(layer.A_log_bias)
    h = torch.zeros(2, 4, 4, 4, dtype=torch.float64)  # (B, H, head_dim of x, state = head_dim of B)
    ys = []
    for t in range(13):
        h = torch.exp(dt[:, t] * a)[..., None, None] * h + dt[:, t, :, None, None] * v[:, t, :, :, None] * \
            k[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, q[:, t]))
    y = torch.stack(ys, dim=1)
    y = layer.g_norm(y) * F.silu(layer.g_proj(x).unflatten(-1, (4, 4)))
    torch.testing.assert_close(layer(x), layer.o_proj(y.flatten(-2)), atol=1e-9, rtol=1e-7)


def test_hybrid_layers_and_bad_input():
    assert hybrid_layers(4, 0) == () and hybrid_layers(4, 1) == (3,) and hybrid_layers(4, 2) == (1, 3)
    assert hybrid_layers(6, 3) == (1, 3, 5)
    with pytest.raises(UserError, match="cannot keep"):
        hybrid_layers(4, 5)
    with pytest.raises(UserError, match="only seed from causal_attention"):
        seed_from_attention(torch.nn.Linear(4, 4))
    with pytest.raises(UserError, match=r"expected input \(B, L, 16\)"):
        seed_from_attention(_attention())(torch.randn(2, 16))
    with pytest.raises(UserError, match="needs embed"):
        convert(torch.nn.Linear(4, 4))


@pytest.fixture(scope="module")
def captions():
    """A tiny image + text decoder trained to name digits, and its task (fast: ~10 s on 2 cores)."""
    from archlab.data import load_dataset
    from archlab.train import fit, seed_everything, shuffled_batches
    from archlab.zoo.models.vl_decoder import TinyVLDecoder, caption_accuracy, caption_loss, caption_task

    d = load_dataset("digits", seed=0)
    task = caption_task({"train": d.x_train, "test": d.x_test}, {"train": d.y_train, "test": d.y_test})
    seed_everything(0)
    teacher = TinyVLDecoder(vocab_size=len(task.vocab), depth=4, dim=64, n_heads=4)
    train = task.inputs["train"]
    fit(teacher, shuffled_batches(*train, batch_size=64, seed=0), caption_loss, epochs=20,
        steps_per_epoch=-(-len(train[0]) // 64), lr=3e-3, amp=False)
    return teacher, task, caption_accuracy(teacher, task)


def test_the_teacher_names_digits_from_their_pixels(captions):
    teacher, task, accuracy = captions
    assert accuracy >= 0.9  # chance is 0.1
    images = task.inputs["test"][0][:4]
    out = teacher.generate(images, task.bos, task.eos, task.max_len)
    assert out.shape[0] == 4 and out.shape[1] <= task.max_len


def test_three_stages_distil_and_the_hybrid_recovers_more_than_the_pure_student(captions):
    from archlab.zoo.models.vl_decoder import caption_accuracy

    teacher, task, teacher_acc = captions
    train = task.inputs["train"]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}

    def task_loss(logits, batch):
        return F.cross_entropy(logits.flatten(0, 1), batch[-1].flatten(), ignore_index=-100)

    recovered, firsts = {}, {}
    for name, keep in (("pure", ()), ("hybrid", hybrid_layers(4, 2))):
        gen = torch.Generator().manual_seed(0)

        def batches(step, gen=gen):
            idx = torch.randint(0, len(train[0]), (64,), generator=gen)
            return tuple(t[idx] for t in train)

        student = convert(teacher, keep)
        assert [type(layer.mixer).__name__ for layer in student.layers].count("SeededMamba2") == 4 - len(keep)
        result = mmmamba_distill(teacher, student, batches, steps=(100, 100, 200), task_loss=task_loss)
        for stage, curve in result.curves.items():  # every stage lowers its loss
            assert curve[-1][1] < curve[0][1], (name, stage, curve[0], curve[-1])
        recovered[name] = caption_accuracy(student, task) / teacher_acc
        firsts[name] = result.curves["attention_output"][0][1]
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"the teacher changed: {k}"
    assert recovered["pure"] > 0.5, recovered  # the pure Mamba-2 student learned (chance is 0.1 of the teacher)
    assert recovered["hybrid"] > recovered["pure"], recovered
