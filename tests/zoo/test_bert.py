"""Classic BERT (MosaicBERT's baseline): the layer computes the post-LN formula with learned positions and a GELU
MLP; padding never changes the real tokens' outputs; the MLM loss is the cross-entropy at the labelled tokens;
Hugging Face's names and BERT-Base's parameter count; bad input is reported. (That a tiny model learns is tested with
MosaicBERT's, in test_mosaicbert.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_model, list_models
from archlab.zoo.models.bert import BertForMaskedLM
from archlab.zoo.models.mosaicbert import mlm_mask

SMALL = dict(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
             max_position_embeddings=16)


def _model() -> BertForMaskedLM:
    torch.manual_seed(0)
    model = create_model("bert_tiny_char", **SMALL).double().eval()
    with torch.no_grad():  # random LayerNorm affines and biases, so nothing is at its initial value
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
    return model


def _batch(lengths: list[int], seqlen: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, SMALL["vocab_size"], (len(lengths), seqlen), generator=gen)
    mask = (torch.arange(seqlen)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


def test_registered_with_hugging_face_names_and_size() -> None:
    assert {"bert_base", "bert_tiny_char"} <= set(list_models("bert*"))
    names = {n for n, _ in create_model("bert_tiny_char").named_parameters()}
    assert {"bert.embeddings.position_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
            "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.encoder.layer.3.intermediate.dense.weight",
            "bert.encoder.layer.3.output.dense.weight", "cls.predictions.transform.dense.weight"} <= names
    with torch.device("meta"):
        base = create_model("bert_base")
    # bert-base-uncased's BertModel (109,482,240) without its pooler (590,592), 6 more word embeddings (vocabulary
    # 30528), and the MLM head: transform dense 590,592 + LayerNorm 1,536 + output bias 30,528 (decoder tied)
    assert sum(p.numel() for p in base.parameters()) == 109_482_240 - 590_592 + 6 * 768 + 590_592 + 1_536 + 30_528


def test_layer_computes_the_post_ln_formula() -> None:
    model = _model()
    layer = model.bert.encoder.layer[0]
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    bias = torch.zeros(2, 1, 1, 5, dtype=torch.float64)
    att = layer.attention
    heads = lambda t: t.reshape(2, 5, 3, 8).transpose(1, 2)  # noqa: E731
    q, k, v = heads(att.self.query(x)), heads(att.self.key(x)), heads(att.self.value(x))
    mha = (torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v).transpose(1, 2).reshape(2, 5, 24)
    a = att.output.LayerNorm(x + att.output.dense(mha))
    want = layer.output.LayerNorm(a + layer.output.dense(F.gelu(layer.intermediate.dense(a))))
    torch.testing.assert_close(layer(x, bias), want, rtol=0, atol=1e-12)
    # learned absolute positions: the same tokens in another order are embedded differently, not permuted
    ids = torch.tensor([[5, 6, 7]])
    emb = model.bert.embeddings(ids)
    assert not torch.allclose(model.bert.embeddings(ids.flip(1)), emb.flip(1))


def test_padding_never_changes_the_real_tokens() -> None:
    model = _model()
    ids, mask = _batch([9, 4, 6], 9)
    out = model(ids, mask)
    keep = mask.bool()
    for b, n in enumerate([9, 4, 6]):  # each sequence run alone, without padding
        alone = model(ids[b:b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone[0], rtol=0, atol=1e-10)
    garbage = ids.masked_fill(~keep, 17)  # what the pad positions hold does not matter
    torch.testing.assert_close(model(garbage, mask)[keep], out[keep], rtol=0, atol=1e-10)


def test_mlm_loss_is_cross_entropy_at_labelled_tokens() -> None:
    model = _model()
    ids, mask = _batch([9, 7], 9)
    inputs, labels = mlm_mask(ids, vocab_size=40, mask_token_id=1, mlm_probability=0.4, attention_mask=mask,
                              seed=3)
    out = model(inputs, mask, labels=labels)
    chosen = labels >= 0
    assert chosen.sum() > 0
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[chosen], labels[chosen]))
    torch.testing.assert_close(out.logits, model(inputs, mask))


def test_bad_input_and_configuration() -> None:
    model = _model()
    ids, mask = _batch([4, 2], 4)
    with pytest.raises(UserError, match="token ids"):
        model(ids + 100)
    with pytest.raises(UserError, match="shape"):
        model(ids, mask[:, :3])
    with pytest.raises(UserError, match="input_ids"):
        model(ids.float())
    with pytest.raises(UserError, match="max_position_embeddings"):
        model(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(UserError, match="unknown option"):
        create_model("bert_tiny_char", hidden_layers=3)
