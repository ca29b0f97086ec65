"""Reference implementations' weights load into archlab's models and give the same outputs.

Hugging Face ``transformers`` (a test-only dependency) is the reference here: its ``MambaForCausalLM``,
``GPTNeoXForCausalLM`` and ``BertForMaskedLM`` are built small with random weights, their ``state_dict()`` is
loaded strictly into archlab's ``mamba_lm``, :class:`GPTNeoXLM` (the Block Transformer's layers) and
``bert_tiny_char``, and the logits must agree. That checks the names, the shapes, the row layouts the loaders
convert, and the mathematics, where a name check alone would pass a model that loads and computes something else.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from archlab import zoo
from archlab.zoo.models.block_transformer import GPTNeoXLM, block_transformer_tiny


def _logits(model: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        out = model(*args, **kwargs)
    return getattr(out, "logits", out).double()  # transformers returns some logits in float32


def test_mamba_lm_loads_transformers_mamba_and_matches_its_logits():
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(vocab_size=50, hidden_size=32, state_size=16, num_hidden_layers=2, expand=2,
                                   conv_kernel=4, use_mambapy=False)
    ref = transformers.MambaForCausalLM(cfg).double().eval()
    ours = zoo.create_model("mamba_lm", d_model=32, n_layer=2, vocab_size=50).double().eval()
    sd = ref.state_dict()
    assert "backbone.embeddings.weight" in sd  # the -hf checkpoints' name, converted on load
    ours.load_state_dict(sd, strict=True)
    x = torch.randint(0, 50, (2, 37))
    # the reference computes its RMSNorm in float32, hence 1e-5 rather than float64 round-off
    torch.testing.assert_close(_logits(ours, x), _logits(ref, x), atol=1e-5, rtol=0)
    # and the reference's own names (state-spaces/mamba-*) still load
    ours.load_state_dict({k.replace("embeddings", "embedding"): v for k, v in sd.items()}, strict=True)


@pytest.mark.parametrize("parallel", [True, False])
def test_gpt_neox_lm_loads_transformers_gpt_neox_and_matches_its_logits(parallel):
    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(vocab_size=61, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=256, rotary_pct=0.25, max_position_embeddings=128,
                                     use_parallel_residual=parallel, hidden_dropout=0.0, attention_dropout=0.0)
    ref = transformers.GPTNeoXForCausalLM(cfg).double().eval()
    sizes = dict(vocab_size=61, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                 use_parallel_residual=parallel)
    ours = GPTNeoXLM(**sizes).double().eval()
    sd = ref.state_dict()
    assert "gpt_neox.layers.0.attention.query_key_value.weight" in sd
    ours.load_state_dict(sd, strict=True)
    x = torch.randint(0, 61, (2, 40))
    torch.testing.assert_close(_logits(ours, x), _logits(ref, x), atol=1e-8, rtol=0)
    # the conversion reorders rows only: saving gives archlab's names, and they load back unchanged
    again = GPTNeoXLM(**sizes).double().eval()
    again.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(_logits(again, x), _logits(ours, x), atol=0, rtol=0)


def test_gpt_neox_loader_takes_pythia_style_extras_and_the_block_transformers_layers():
    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(vocab_size=61, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=256, hidden_dropout=0.0, attention_dropout=0.0)
    sd = transformers.GPTNeoXForCausalLM(cfg).state_dict()
    # Pythia checkpoints: head called embed_out, plus the constants older GPT-NeoX code stored
    sd["embed_out.weight"] = sd.pop("lm_head.weight")
    sd["gpt_neox.layers.0.attention.bias"] = torch.ones(1, 1, 8, 8, dtype=torch.bool).tril()
    sd["gpt_neox.layers.0.attention.masked_bias"] = torch.tensor(-1e9)
    sd["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = torch.ones(2)
    GPTNeoXLM(vocab_size=61, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
              intermediate_size=256).load_state_dict(sd, strict=True)
    # the Block Transformer's token decoder is built from the same layer, so its GPT-NeoX layers load too
    bt = block_transformer_tiny()
    layer = bt.token_decoder.gpt_neox.layers[0]
    width = layer.input_layernorm.normalized_shape[0]
    heads = layer.num_attention_heads
    ref_cfg = transformers.GPTNeoXConfig(vocab_size=8, hidden_size=width, num_hidden_layers=1,
                                         num_attention_heads=heads,
                                         intermediate_size=layer.mlp.dense_h_to_4h.out_features)
    ref_layer = transformers.GPTNeoXForCausalLM(ref_cfg).gpt_neox.layers[0]
    layer.load_state_dict(ref_layer.state_dict(), strict=True)
    torch.testing.assert_close(layer.attention.out_proj.weight, ref_layer.attention.dense.weight)


def test_bert_loads_transformers_bert_and_matches_its_logits_with_padding():
    torch.manual_seed(0)
    ours = zoo.create_model("bert_tiny_char").double().eval()
    c = ours.config
    cfg = transformers.BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                  num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                                  intermediate_size=c.intermediate_size,
                                  max_position_embeddings=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
                                  layer_norm_eps=c.layer_norm_eps, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0, pad_token_id=0)
    ref = transformers.BertForMaskedLM(cfg).double().eval()
    sd = ref.state_dict()
    assert "cls.predictions.bias" in sd
    ours.load_state_dict(sd, strict=True)
    x = torch.randint(2, c.vocab_size, (3, 50))
    mask = torch.ones_like(x)
    mask[1, 30:] = 0
    mask[2, 7:] = 0
    x = x * mask  # padding id 0
    got, want = _logits(ours, x, attention_mask=mask), _logits(ref, x, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-10, rtol=0)


def test_bert_loads_an_original_google_style_checkpoint():
    torch.manual_seed(0)
    ours = zoo.create_model("bert_tiny_char")
    sd = {k: v.clone() for k, v in ours.state_dict().items()}
    original = {}
    for k, v in sd.items():  # what bert-base-uncased's pytorch_model.bin looks like
        if "LayerNorm." in k:
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        if k == "cls.predictions.decoder.bias":
            k = "cls.predictions.bias"
        original[k] = v + 0.5 if k.endswith("gamma") else v
    width = ours.config.hidden_size
    original |= {"bert.pooler.dense.weight": torch.zeros(width, width), "bert.pooler.dense.bias": torch.zeros(width),
                 "cls.seq_relationship.weight": torch.zeros(2, width), "cls.seq_relationship.bias": torch.zeros(2),
                 "bert.embeddings.position_ids": torch.arange(ours.config.max_position_embeddings)[None],
                 "bert.embeddings.token_type_ids": torch.zeros(1, ours.config.max_position_embeddings, dtype=int)}
    fresh = zoo.create_model("bert_tiny_char")
    fresh.load_state_dict(original, strict=True)
    loaded = fresh.state_dict()
    assert set(loaded) == set(sd)
    for k in sd:
        torch.testing.assert_close(loaded[k], sd[k] + 0.5 if k.endswith("LayerNorm.weight") else sd[k])
    # a key that is neither archlab's nor a known Hugging Face one is still refused
    with pytest.raises(RuntimeError, match="Unexpected"):
        fresh.load_state_dict(original | {"bert.encoder.layer.0.extra": torch.zeros(1)}, strict=True)
