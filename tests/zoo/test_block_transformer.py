"""Block Transformer: causality over blocks and inside blocks, cached decoding = full forward, cache accounting,
a tiny run that learns, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo import create_model, list_models, model_info
from archlab.zoo.models.block_transformer import BlockTransformer, GPTNeoXLM, vanilla_baseline

LB = 4


def _model(dtype=torch.float64, seed: int = 0, **kw) -> BlockTransformer:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=37, block_length=LB, block_hidden_size=32, block_num_hidden_layers=2,
               block_num_attention_heads=2, token_hidden_size=24, token_num_hidden_layers=2,
               token_num_attention_heads=2, expansion_ratio=2, rotary_pct=0.5)
    cfg.update(kw)
    model = BlockTransformer(**cfg).to(dtype).eval()
    # random (not the N(0, 0.02) init) weights, so that every path carries signal
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def _ids(batch: int, length: int, vocab: int = 37, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_registered_and_shapes(one_thread):
    assert {"block_transformer_tiny", "block_main_b4_85"} <= set(list_models("block*"))
    assert model_info("block_transformer_tiny")["input_dtype"] == "long"
    model = create_model("block_transformer_tiny").eval()
    x = _ids(2, 23, vocab=256)
    assert model(x).shape == (2, 23 - 4 + 1, 256)
    assert create_model("block_transformer_tiny", num_classes=11).vocab_size == 11


def test_published_config_builds_on_meta():
    with torch.device("meta"):
        model = create_model("block_main_b4_85")
    assert model.embedder.embeddings.weight.shape == (50304, 192)  # concat: 4 x 192 = 768
    assert model.token_decoder.expansion_layer.weight.shape == (768 * 2, 768, 1)
    assert len(model.block_decoder.gpt_neox.layers) == len(model.token_decoder.gpt_neox.layers) == 6


@pytest.mark.parametrize("length", [16, 19])
def test_logits_never_see_later_tokens(one_thread, length):
    model = _model()
    x = _ids(2, length)
    base = model(x)
    n_blocks = math.ceil(length / LB)
    # perturb every token of block j: predictions of tokens in blocks <= j - 1 (indices < j * LB) are unchanged
    for j in range(1, n_blocks):
        y = x.clone()
        y[:, j * LB:(j + 1) * LB] = (y[:, j * LB:(j + 1) * LB] + 1) % 37
        out = model(y)
        keep = j * LB - LB + 1  # logits[:, k] predicts token LB + k; the prediction of token j * LB itself is kept
        torch.testing.assert_close(out[:, :keep], base[:, :keep], rtol=0, atol=1e-12)
        assert (out[:, keep:] - base[:, keep:]).abs().max() > 1e-3  # the perturbation is seen afterwards
    # inside a block: a later token of the same block changes nothing before it
    for s in range(LB + 1, length):
        y = x.clone()
        y[:, s] = (y[:, s] + 5) % 37
        out = model(y)
        torch.testing.assert_close(out[:, :s - LB + 1], base[:, :s - LB + 1], rtol=0, atol=1e-12)
        if s - LB + 1 < out.shape[1]:
            assert (out[:, s - LB + 1] - base[:, s - LB + 1]).abs().max() > 1e-3


@pytest.mark.parametrize("projection_method", ["concat", "projection_layer"])
@pytest.mark.parametrize("prompt", [LB, LB + 2, 2 * LB + 3])
def test_step_decoding_equals_full_forward(one_thread, projection_method, prompt):
    model = _model(projection_method=projection_method)
    x = _ids(3, 21)
    full = model(x)
    logits, state = model(x[:, :prompt], return_state=True)
    torch.testing.assert_close(logits, full[:, :prompt - LB + 1], rtol=0, atol=1e-10)
    for t in range(prompt, x.shape[1]):
        step_logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(step_logits, full[:, t + 1 - LB], rtol=0, atol=1e-10)


def test_cache_sizes(one_thread):
    model = _model()
    r = model.expansion_ratio
    x = _ids(2, 33)
    _, state = model(x[:, :LB], return_state=True)
    for n in range(LB, x.shape[1]):
        n_global, n_local = state.cache_lengths()
        acct = model.kv_cache_entries(n)
        assert (n_global, n_local) == (n // LB, r + n % LB) == (acct["global_positions"], acct["local_positions"])
        assert n_local <= r + LB - 1
        # every layer holds keys and values of exactly that many positions
        values = sum(c.k[0].numel() + c.v[0].numel() for c in state.global_kv + state.local_kv)
        assert values == acct["total_values"]
        _, state = model.step(x[:, n], state)
    assert state.cache_lengths()[0] == x.shape[1] // LB
    # at a block boundary the global cache is exactly L / L_B positions, the local one the prefix only
    _, state = model(x[:, :32], return_state=True)
    assert state.cache_lengths() == (32 // LB, r)
    assert model.kv_cache_entries(2048)["global_positions"] == 2048 // LB


def test_generate_matches_uncached_greedy(one_thread):
    model = _model()
    prompt = _ids(2, 6)
    out = model.generate(prompt, 9)
    seq = prompt
    for _ in range(9):
        nxt = model(seq)[:, -1].argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    assert torch.equal(out, seq)


def test_tiny_model_learns_repeating_pattern(one_thread):
    torch.manual_seed(0)
    model = create_model("block_transformer_tiny", vocab_size=32)
    gen = torch.Generator().manual_seed(0)
    pattern = torch.randint(0, 32, (6,), generator=gen)  # period 6: not aligned with blocks of 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        phase = torch.randint(0, 6, (16, 1), generator=gen)
        x = pattern[(phase + torch.arange(32)) % 6]
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * math.log(32), loss.item()  # from log(32) = 3.47 at chance


def _vanilla(seed: int = 0) -> GPTNeoXLM:
    torch.manual_seed(seed)
    model = GPTNeoXLM(vocab_size=37, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                      rotary_pct=0.5).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def test_vanilla_baseline_is_causal_and_decodes_like_its_forward(one_thread):
    model = _vanilla()
    x = _ids(3, 17)
    full = model(x)
    assert full.shape == (3, 17, 37)
    for s in (0, 5, 16):  # changing token s changes nothing before it, and the logits at s
        y = x.clone()
        y[:, s] = (y[:, s] + 3) % 37
        out = model(y)
        torch.testing.assert_close(out[:, :s], full[:, :s], rtol=0, atol=1e-12)
        assert (out[:, s] - full[:, s]).abs().max() > 1e-3
    logits, state = model(x[:, :5], return_state=True)
    torch.testing.assert_close(logits, full[:, :5], rtol=0, atol=1e-10)
    for t in range(5, 17):
        step_logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(step_logits, full[:, t], rtol=0, atol=1e-10)
    assert state[0].k.shape[2] == 17 and model.kv_cache_entries(17)["positions"] == 17
    out = model.generate(x[:, :4], 6)
    seq = x[:, :4]
    for _ in range(6):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1)[:, None]], dim=1)
    assert torch.equal(out, seq)


def test_vanilla_baseline_matches_parameters_and_layers():
    block = BlockTransformer(vocab_size=256, block_hidden_size=128, block_num_hidden_layers=3,
                             block_num_attention_heads=4, token_hidden_size=96, token_num_hidden_layers=2,
                             token_num_attention_heads=3, rotary_pct=0.5)
    vanilla = vanilla_baseline(block)
    n_block = sum(p.numel() for p in block.parameters())
    n_vanilla = sum(p.numel() for p in vanilla.parameters())
    per_layer = sum(p.numel() for p in vanilla.gpt_neox.layers[0].parameters())
    assert abs(n_vanilla - n_block) <= per_layer / 2  # the closest depth
    ref, got = block.token_decoder.gpt_neox.layers[0], vanilla.gpt_neox.layers[0]
    assert [p.shape for p in ref.parameters()] == [p.shape for p in got.parameters()]
    assert got.attention.n_heads == 3 and got.attention.rotary_emb.rotary_dim == 16
    assert len(vanilla_baseline(block, num_hidden_layers=2).gpt_neox.layers) == 2
    # the vanilla cache grows by one position per token in every layer, the block model's global one per block
    block_kv = block.kv_cache_entries(2048)["total_values"]
    assert vanilla.kv_cache_entries(2048)["total_values"] > 4 * block_kv
    with pytest.raises(UserError, match="block_transformer"):
        vanilla(torch.rand(2, 8))


def test_bad_input_and_config_raise():
    model = _model()
    with pytest.raises(UserError, match="block_transformer"):
        model(_ids(2, 3))  # shorter than one block
    with pytest.raises(UserError, match="block_transformer"):
        model(torch.rand(2, 8))
    with pytest.raises(UserError, match="block_transformer"):
        model.kv_cache_entries(2)
    with pytest.raises(UserError, match="divisible by block_length"):
        BlockTransformer(block_hidden_size=30, block_length=4)
    with pytest.raises(UserError, match="projection_method"):
        BlockTransformer(projection_method="mean")
    with pytest.raises(UserError, match="expansion_ratio"):
        BlockTransformer(expansion_ratio=0)
