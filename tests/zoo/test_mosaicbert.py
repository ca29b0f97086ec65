"""MosaicBERT: the unpadded forward equals the padded, attention-masked forward and each sequence run alone; pad
contents never matter; the layer computes the published post-LN ALiBi + GeGLU formula; the MLM-only-at-masked path
equals the full one; names and parameter count follow the reference; BERT masking has the 30 % / 80-10-10 rates;
a tiny model learns; bad input is reported."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_model, list_mixers, list_models
from archlab.zoo.layers.positional import alibi_slopes
from archlab.zoo.models.mosaicbert import BertForMaskedLM, mlm_mask

SMALL = dict(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
             alibi_starting_size=8)


def _model(**kw) -> BertForMaskedLM:
    torch.manual_seed(0)
    model = create_model("mosaicbert_tiny_char", **{**SMALL, **kw}).double().eval()
    with torch.no_grad():  # random LayerNorm affines and biases, so nothing is at its initial value
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layernorm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
    return model


def _batch(lengths: list[int], seqlen: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SMALL["vocab_size"], (len(lengths), seqlen), generator=gen)
    mask = (torch.arange(seqlen)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


def _encode(model: BertForMaskedLM, ids: torch.Tensor, mask: torch.Tensor, unpad: bool = True) -> torch.Tensor:
    return model.bert(ids, attention_mask=mask, unpad=unpad)


def test_registered_models_and_not_a_mixer() -> None:
    assert {"mosaicbert_base", "mosaicbert_tiny_char"} <= set(list_models("mosaicbert*"))
    assert not any("bert" in name for name in list_mixers())


def test_unpadded_forward_equals_padded_masked_forward() -> None:
    model = _model()
    ids, mask = _batch([11, 4, 7, 1, 0], 11)
    unpadded = _encode(model, ids, mask)
    padded = _encode(model, ids, mask, unpad=False)
    keep = mask.bool()
    torch.testing.assert_close(unpadded[keep], padded[keep], rtol=0, atol=1e-5)
    assert torch.equal(unpadded[~keep], torch.zeros_like(unpadded[~keep]))
    # and through the head
    torch.testing.assert_close(model(ids, mask)[keep], model(ids, mask, unpad=False)[keep], rtol=0, atol=1e-5)


def test_each_sequence_alone_equals_the_batch() -> None:
    model = _model()
    lengths = [9, 3, 6]
    ids, mask = _batch(lengths, 9)
    batched = _encode(model, ids, mask)
    for b, n in enumerate(lengths):
        alone = _encode(model, ids[b:b + 1, :n], torch.ones(1, n, dtype=torch.long))
        torch.testing.assert_close(batched[b, :n], alone[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("unpad", [True, False])
def test_pad_token_contents_do_not_change_real_tokens(unpad: bool) -> None:
    model = _model()
    ids, mask = _batch([10, 5, 2], 10)
    out = _encode(model, ids, mask, unpad)
    noisy = torch.where(mask.bool(), ids, torch.randint(1, SMALL["vocab_size"], ids.shape))
    token_types = torch.randint(0, 2, ids.shape) * (1 - mask)  # token types changed at pad positions only
    out2 = model.bert(noisy, token_type_ids=token_types, attention_mask=mask, unpad=unpad)
    keep = mask.bool()
    torch.testing.assert_close(out[keep], out2[keep], rtol=0, atol=1e-12)


def test_layer_matches_spelled_out_formula() -> None:
    # embeddings, then per layer: a = LN(x + W_o MHA(x) + b_o) with scores q.k/sqrt(d) - m_h |i - j|;
    # y = LN(a + wo(gelu(h[:I]) * h[I:])), h = a @ gated_layers^T, all in one unpadded sequence
    model = _model(num_hidden_layers=1)
    ids, mask = _batch([6], 6)
    emb = model.bert.embeddings
    x = F.layer_norm(emb.word_embeddings.weight[ids[0]] + emb.token_type_embeddings.weight[0],
                     (24,), emb.LayerNorm.weight, emb.LayerNorm.bias, 1e-12)
    layer = model.bert.encoder.layer[0]
    att, out, mlp = layer.attention.self, layer.attention.output, layer.mlp
    qkv = x @ att.Wqkv.weight.T + att.Wqkv.bias
    pos = torch.arange(6, dtype=torch.float64)
    heads = []
    for h, m in enumerate(alibi_slopes(3)):
        q, k, v = (qkv[:, i * 24 + h * 8:i * 24 + (h + 1) * 8] for i in range(3))
        scores = q @ k.T / math.sqrt(8) - m * (pos[:, None] - pos[None, :]).abs()
        heads.append(scores.softmax(-1) @ v)
    a = F.layer_norm(x + torch.cat(heads, -1) @ out.dense.weight.T + out.dense.bias, (24,),
                     out.LayerNorm.weight, out.LayerNorm.bias, 1e-12)
    assert mlp.gated_layers.weight.shape == (40, 24) and mlp.gated_layers.bias is None
    assert mlp.wo.weight.shape == (24, 20)
    hid = a @ mlp.gated_layers.weight.T
    y = F.layer_norm(a + (F.gelu(hid[:, :20]) * hid[:, 20:]) @ mlp.wo.weight.T + mlp.wo.bias, (24,),
                     mlp.layernorm.weight, mlp.layernorm.bias, 1e-12)
    torch.testing.assert_close(_encode(model, ids, mask)[0], y, rtol=0, atol=1e-10)


def test_mlm_logits_only_at_masked_tokens_equal_full_logits() -> None:
    model = _model()
    ids, mask = _batch([8, 5, 3], 8)
    labels = torch.full_like(ids, -100)
    picks = [(0, 0), (0, 7), (1, 2), (2, 1), (1, 6)]  # (1, 6) is padding: ignored
    for b, t in picks:
        labels[b, t] = ids[b, t]
    full = model(ids, mask)
    result = model(ids, mask, labels=labels)
    chosen = (labels >= 0) & mask.bool()
    torch.testing.assert_close(result.logits[chosen], full[chosen], rtol=0, atol=1e-10)
    assert torch.equal(result.logits[~chosen], torch.zeros_like(result.logits[~chosen]))
    torch.testing.assert_close(result.loss, F.cross_entropy(full[chosen], ids[chosen]), rtol=0, atol=1e-12)


def test_alibi_table_grows_past_starting_size() -> None:
    model = _model()  # alibi_starting_size 8
    ids, mask = _batch([13, 12], 13)
    out = _encode(model, ids, mask)
    assert model.bert.encoder.alibi.shape == (1, 3, 13, 13)
    torch.testing.assert_close(out[1, :12], _encode(model, ids[1:, :12], mask[1:, :12])[0], rtol=0, atol=1e-10)


def test_names_tied_decoder_and_base_parameter_count() -> None:
    with torch.device("meta"):  # shapes only: no 137M-parameter initialisation
        model = create_model("mosaicbert_base")
    keys = set(model.state_dict())
    layer0 = {k.removeprefix("bert.encoder.layer.0.") for k in keys if k.startswith("bert.encoder.layer.0.")}
    assert layer0 == {"attention.self.Wqkv.weight", "attention.self.Wqkv.bias", "attention.output.dense.weight",
                      "attention.output.dense.bias", "attention.output.LayerNorm.weight",
                      "attention.output.LayerNorm.bias", "mlp.gated_layers.weight", "mlp.wo.weight", "mlp.wo.bias",
                      "mlp.layernorm.weight", "mlp.layernorm.bias"}
    assert {"bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
            "cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
            "cls.predictions.transform.dense.weight"} <= keys
    assert not any("position_embeddings" in k for k in keys)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    v, h, i, n = 30528, 768, 3072, 12
    per_layer = (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * 2 * i) + (i * h + h) + 2 * h
    expected = v * h + 2 * h + 2 * h + n * per_layer + (h * h + h) + 2 * h + v
    assert sum(p.numel() for p in model.parameters()) == expected == 137_400_384


def test_mlm_mask_rates_and_specials() -> None:
    vocab, mask_id, pad_id, cls_id = 1000, 3, 0, 2
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (400, 500), generator=gen)
    ids[:, 0] = cls_id
    attention = torch.ones_like(ids)
    attention[:, 450:] = 0
    ids[:, 450:] = pad_id
    inputs, labels = mlm_mask(ids, vocab_size=vocab, mask_token_id=mask_id, special_token_ids=[cls_id, pad_id],
                              attention_mask=attention, seed=17)
    chosen = labels != -100
    eligible = attention.bool().clone()
    eligible[:, 0] = False
    assert not chosen[~eligible].any() and torch.equal(inputs[~eligible], ids[~eligible])
    assert torch.equal(labels[chosen], ids[chosen])
    n = eligible.sum().item()  # ~ 180k tokens: binomial std of the rate ~ 0.001
    assert abs(chosen.sum().item() / n - 0.3) < 0.005
    c = chosen.sum().item()
    as_mask = (inputs[chosen] == mask_id).sum().item() / c
    kept = (inputs[chosen] == ids[chosen]).sum().item() / c
    other = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(other - 0.1) < 0.01
    assert torch.equal(inputs[~chosen], ids[~chosen])
    again = mlm_mask(ids, vocab_size=vocab, mask_token_id=mask_id, special_token_ids=[cls_id, pad_id],
                     attention_mask=attention, seed=17)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    other_seed = mlm_mask(ids, vocab_size=vocab, mask_token_id=mask_id, seed=18)
    assert not torch.equal(other_seed[1], labels)


# classic BERT (archlab.zoo.models.bert) too; its learned positions take longer to leave the unigram plateau
@pytest.mark.parametrize("name,lr,steps", [("mosaicbert_tiny_char", 5e-3, 110), ("bert_tiny_char", 4e-3, 300)])
def test_tiny_char_model_learns_mlm(one_thread, name: str, lr: float, steps: int) -> None:
    # a masked character is predicted better than by its frequency alone: the model uses its context
    text = "the quick brown fox jumps over the lazy dog. " * 40
    data = torch.tensor([ord(c) for c in text])
    freq = torch.bincount(data).double()
    freq = freq[freq > 0] / len(data)
    unigram_entropy = -(freq * freq.log()).sum().item()  # ~ 3.05 nats
    torch.manual_seed(0)
    model = create_model(name, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - 32, (16,), generator=gen)
        ids = torch.stack([data[s:s + 32] for s in starts])
        inputs, labels = mlm_mask(ids, vocab_size=128, mask_token_id=1, generator=gen)
        loss = model(inputs, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 4.0  # ~ ln(128) at initialisation
    assert sum(losses[-10:]) / 10 < unigram_entropy - 0.5


def test_bad_input_and_configuration() -> None:
    model = _model()
    ids, mask = _batch([4, 2], 4)
    with pytest.raises(UserError, match="token ids"):
        model(ids + 100)
    with pytest.raises(UserError, match="shape"):
        model(ids, mask[:, :3])
    with pytest.raises(UserError, match="input_ids"):
        model(ids.float())
    with pytest.raises(UserError, match="divisible"):
        create_model("mosaicbert_tiny_char", hidden_size=30, num_attention_heads=4)
    with pytest.raises(UserError, match="unknown option"):
        create_model("mosaicbert_tiny_char", hidden_layers=3)
    with pytest.raises(UserError, match="mlm_probability"):
        mlm_mask(ids, vocab_size=40, mask_token_id=1, mlm_probability=1.5)
