"""Cache-aware streaming Conformer: chunk-by-chunk streaming equals the offline chunked-limited forward for every
look-ahead of one model, the look-ahead bounds what each chunk depends on, the relative-position attention matches
its definition, padding, multi-look-ahead training, NeMo parameter names, and bad input."""

from __future__ import annotations

import math
import random

import pytest
import torch

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.models.conformer import RelPositionMultiHeadAttention, StreamingConformer, rel_pos_emb

PAPER_CONTEXTS = [[70, 13], [70, 6], [70, 1], [70, 0]]


def _model(contexts=PAPER_CONTEXTS, **kw) -> StreamingConformer:
    torch.manual_seed(0)
    cfg = dict(feat_in=12, n_layers=2, d_model=16, n_heads=2, subsampling_conv_channels=4, conv_kernel_size=5,
               att_context_size=contexts)
    model = StreamingConformer(**{**cfg, **kw}).double().eval()
    with torch.no_grad():
        # random weights everywhere, the positional biases included (zero at initialisation)
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.1))
    return model


def _stream(model: StreamingConformer, x: torch.Tensor, ctx, step: int) -> torch.Tensor:
    cache = model.initial_cache(ctx)
    outs = []
    for start in range(0, x.shape[1], step):
        out, cache = model.stream(x[:, start:start + step], cache)
        outs.append(out)
    return torch.cat(outs, dim=1)


def test_streaming_equals_offline_at_every_look_ahead_of_one_model(one_thread) -> None:
    model = _model()
    # 113 subsampled frames: beyond the 70-frame left context plus a 14-frame chunk, ending in a partial chunk
    x = torch.randn(2, 8 * 112 + 5, 12, dtype=torch.float64)
    outputs = {}
    for ctx in PAPER_CONTEXTS:
        offline = model(x, att_context_size=ctx)
        assert offline.shape == (2, 113, 16)
        step = model.chunk_frames(ctx)
        assert step == 8 * (ctx[1] + 1)
        assert torch.allclose(_stream(model, x, ctx, step), offline, atol=1e-10, rtol=0)
        outputs[tuple(ctx)] = offline
    # bigger pieces (two chunks at a time) give the same stream
    two_chunks = _stream(model, x, [70, 6], 2 * model.chunk_frames([70, 6]))
    assert torch.allclose(two_chunks, outputs[(70, 6)], atol=1e-10, rtol=0)
    # the look-aheads are different models of the same weights: the outputs differ
    assert (outputs[(70, 13)] - outputs[(70, 0)]).abs().max() > 1e-3
    # the default inference context is the first one
    assert torch.equal(model(x), outputs[(70, 13)])


def test_cache_sizes_are_left_context_and_kernel_minus_one(one_thread) -> None:
    model = _model(contexts=[[8, 3]])
    cache = model.initial_cache()
    for n_chunks in range(1, 5):
        _, cache = model.stream(torch.randn(1, 32, 12, dtype=torch.float64), cache)
        for ch, tm in zip(cache.last_channel, cache.last_time, strict=True):
            assert ch.shape == (1, min(4 * n_chunks, 8), 16)
            assert tm.shape == (1, 16, 4)
    assert cache.offset == 16


@pytest.mark.parametrize("ctx", [[8, 3], [8, 1], [8, 0]])
def test_output_of_a_chunk_ignores_input_beyond_its_look_ahead(ctx, one_thread) -> None:
    model = _model(contexts=[ctx])
    chunk = ctx[1] + 1
    x = torch.randn(1, 8 * 24, 12, dtype=torch.float64)
    base = model(x)
    for c in range(3):
        end = (c + 1) * chunk  # first subsampled frame after chunk c
        y = x.clone()
        y[:, 8 * end:] += torch.randn_like(y[:, 8 * end:])
        out = model(y)
        assert torch.equal(out[:, :end], base[:, :end])
        assert (out[:, end:end + chunk] - base[:, end:end + chunk]).abs().max() > 1e-6
        if chunk > 1:
            # within its chunk a frame does look ahead: the chunk's last raw frame changes its first output
            z = x.clone()
            z[:, 8 * (end - 1)] += 1.0
            assert (model(z)[:, end - chunk] - base[:, end - chunk]).abs().max() > 1e-6


def test_relative_position_attention_matches_its_definition() -> None:
    torch.manual_seed(1)
    att = RelPositionMultiHeadAttention(2, 8).double()
    with torch.no_grad():
        att.pos_bias_u.normal_()
        att.pos_bias_v.normal_()
    tk, tq = 7, 3
    keys = torch.randn(2, tk, 8, dtype=torch.float64)
    query = keys[:, tk - tq:]
    mask = torch.rand(1, tq, tk) < 0.3
    mask[..., -1] = False
    out = att(query, keys, mask, rel_pos_emb(tk, 8, torch.float64, torch.device("cpu")))
    # direct: score(i, j) = (q_i + u) k_j + (q_i + v) W_pos pe(i - j), queries at absolute positions tk - tq + i
    q = att.linear_q(query).view(2, tq, 2, 4)
    k = att.linear_k(keys).view(2, tk, 2, 4)
    v = att.linear_v(keys).view(2, tk, 2, 4)
    ref = torch.zeros(2, tq, 2, 4, dtype=torch.float64)
    for i in range(tq):
        scores = []
        for j in range(tk):
            rel = tk - tq + i - j
            div = torch.exp(torch.arange(0, 8, 2, dtype=torch.float64) * -(math.log(10000.0) / 8))
            pe = torch.stack([torch.sin(rel * div), torch.cos(rel * div)], -1).reshape(8)
            p = att.linear_pos(pe).view(2, 4)
            scores.append(((q[:, i] + att.pos_bias_u) * k[:, j]).sum(-1) + ((q[:, i] + att.pos_bias_v) * p).sum(-1))
        s = torch.stack(scores, -1) / 2.0  # sqrt(d_k) = 2
        s = s.masked_fill(mask[0, i], float("-inf")).softmax(-1)
        ref[:, i] = torch.einsum("bhj,bjhd->bhd", s, v)
    assert torch.allclose(out, att.linear_out(ref.reshape(2, tq, 8)), atol=1e-10)


def test_padded_batch_equals_the_unpadded_sequences(one_thread) -> None:
    model = _model(contexts=[[8, 1]])
    x = torch.randn(2, 64, 12, dtype=torch.float64)
    out, lengths = model(x, lengths=torch.tensor([64, 37]))
    assert lengths.tolist() == [8, 5]  # ceil(T / 8)
    short = model(x[1:, :37])
    assert torch.allclose(out[1:, :5], short, atol=1e-12)
    assert torch.allclose(out[:1], model(x[:1]), atol=1e-12)


def test_training_draws_a_look_ahead_per_batch(one_thread) -> None:
    random.seed(0)  # the draw uses Python's random, as NeMo's does
    model = _model(contexts=[[8, 3], [8, 0]], dropout=0.0, dropout_pre_encoder=0.0, dropout_att=0.0)
    x = torch.randn(1, 64, 12, dtype=torch.float64)
    refs = [model(x, att_context_size=c) for c in ([8, 3], [8, 0])]
    model.train()
    seen = set()
    with torch.no_grad():
        for _ in range(12):
            out = model(x)
            hits = [i for i, r in enumerate(refs) if torch.allclose(out, r, atol=1e-12)]
            assert len(hits) == 1
            seen.add(hits[0])
    assert seen == {0, 1}


def test_registered_models_and_nemo_names(one_thread) -> None:
    model = zoo.create_model("conformer_streaming_tiny").eval()
    assert model.att_context_size_all == [(70, 13), (70, 6), (70, 1), (70, 0)]
    with torch.no_grad():
        assert model(torch.randn(1, 224, 80)).shape == (1, 28, 64)
    keys = set(model.state_dict())
    for key in ["pre_encode.conv.0.weight", "pre_encode.conv.2.weight", "pre_encode.conv.3.bias",
                "pre_encode.out.weight", "layers.1.self_attn.linear_pos.weight", "layers.1.self_attn.pos_bias_u",
                "layers.0.conv.depthwise_conv.weight", "layers.0.conv.batch_norm.weight",
                "layers.0.feed_forward2.linear1.bias", "layers.0.norm_out.bias"]:
        assert key in keys
    # NeMo's ConvSubsampling input to `out`: channels x frequency bins after three (2, 1)-padded stride-2 convs
    assert model.pre_encode.out.in_features == 32 * 11  # 80 -> 41 -> 21 -> 11
    with torch.device("meta"):
        large = zoo.create_model("fastconformer_streaming_large")
    assert len(large.layers) == 17 and large.d_model == 512


def test_bad_configuration_and_input_raise() -> None:
    with pytest.raises(UserError, match="multiple of the chunk size"):
        StreamingConformer(feat_in=8, n_layers=1, d_model=8, n_heads=2, att_context_size=[70, 12])
    with pytest.raises(UserError, match="divisible by n_heads"):
        StreamingConformer(feat_in=8, n_layers=1, d_model=10, n_heads=4)
    with pytest.raises(UserError, match="power of 2"):
        StreamingConformer(feat_in=8, n_layers=1, d_model=8, n_heads=2, subsampling_factor=6)
    model = _model(contexts=[[8, 1]])
    with pytest.raises(UserError, match=r"\(B, T, 12\)"):
        model(torch.randn(1, 12, 40, dtype=torch.float64))
    _, cache = model.stream(torch.randn(1, 13, 12, dtype=torch.float64))
    with pytest.raises(UserError, match="final"):
        model.stream(torch.randn(1, 16, 12, dtype=torch.float64), cache)
