"""Block Transformer: a global block decoder over blocks of tokens and a local token decoder inside each block.

Paper: Ho, Bae, Kim, Jo, Kim, Schuster, Fisch, Thorne and Yun, "Block Transformer: Global-to-Local Language
Modeling for Fast Inference", NeurIPS 2024. Structure, names and defaults follow itsnamgyu/block-transformer
``model/block_transformer.py`` (``BlockTransformer``: ``embedder``, ``block_decoder``, ``token_decoder``),
``model/embedder/lookup.py`` + ``model/embedder/base.py`` (``LookupEmbedder``: ``embeddings``, projection methods
``concat`` / ``projection_layer``), ``model/block_decoder/gpt_neo_x.py`` and ``model/token_decoder/gpt_neo_x.py``
+ ``model/token_decoder/base.py`` (GPT-NeoX stacks under ``gpt_neox``: ``embed_in``, ``layers``,
``final_layer_norm``; ``embed_out``; the ``prefix`` decoding strategy with an ``expansion_layer``).

With block length ``L_B`` and ``N = L / L_B`` blocks:

1. embedder: the ``L_B`` token embeddings of a block (width ``d_block / L_B`` each) are concatenated into one
   block embedding of width ``d_block`` (``projection_method="concat"``, the reference's main setting), or a
   linear map of the concatenation (``"projection_layer"``: a ``Conv1d`` of kernel and stride ``L_B``);
2. block decoder: a causal GPT-NeoX-style stack over the ``N`` block embeddings; its output at block ``i`` is the
   context embedding of blocks ``<= i`` (global attention, a KV cache of ``N`` positions);
3. token decoder: the tokens of block ``i + 1`` are decoded by a causal stack that attends only inside its own
   block, prefixed by ``expansion_ratio`` vectors made from the context embedding of block ``i`` by the
   ``expansion_layer`` (1x1 ``Conv1d`` ``d_block -> d_token * expansion_ratio``); the output at the last prefix
   position predicts the first token of the block (local attention, a KV cache of at most
   ``expansion_ratio + L_B - 1`` positions, independent of ``L``);
4. LM head ``embed_out``.

The first block has no previous context, so, as in the reference, it is never predicted: ``forward`` on
``L >= L_B`` tokens returns the ``L - L_B + 1`` predictions of tokens ``L_B .. L`` (the last one is the next token
after the input). Attention uses archlab's ``causal_attention`` mixer (RoPE on the first ``rotary_pct`` of each
head, GPT-NeoX's 0.25; GPT-NeoX's parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))``).

The paper's baseline, a vanilla decoder-only GPT-NeoX LM, is :class:`GPTNeoXLM`; :func:`vanilla_baseline` builds one
from the same layers as a given Block Transformer's token decoder, with the depth closest in parameters
(``benchmarks/block_decode.py`` compares their decoding throughput).

The attention's fused projection is the ``causal_attention`` mixer's ``Wqkv`` / ``out_proj``; GPT-NeoX layer
weights (Pythia, Hugging Face ``GPTNeoXForCausalLM``, the layers of the reference's decoders) are converted as they
load (:mod:`~archlab.zoo.models.block_transformer.gpt_neox`). Deviations from the reference: the block decoder
has no (unused) ``embed_in``; padding blocks and ``attention_mask`` are not supported (every sequence is full); one
embedding token per block (``n_embedding_tokens=1``, the only setting the reference's generation supports); the
optional block-decoding and auto-encoding losses are left out.

Layout, one idea per module: :mod:`~archlab.zoo.models.block_transformer.gpt_neox` (the GPT-NeoX layer and stack,
their checkpoint conversion, and the vanilla :class:`GPTNeoXLM`), :mod:`~archlab.zoo.models.block_transformer.stages`
(the embedder, the block decoder and the token decoder: steps 1 to 3 above) and
:mod:`~archlab.zoo.models.block_transformer.model` (:class:`BlockTransformer`, its decoding state,
:func:`vanilla_baseline` and the registered configurations). Importing the package registers the models.
"""

from archlab.zoo.models.block_transformer.gpt_neox import GPTNeoXLayer, GPTNeoXLM, GPTNeoXStack
from archlab.zoo.models.block_transformer.model import (
    PAPER,
    BlockTransformer,
    BlockTransformerState,
    block_main_b4_85,
    block_transformer_tiny,
    vanilla_baseline,
)
from archlab.zoo.models.block_transformer.stages import (
    PROJECTION_METHODS,
    GPTNeoXBlockDecoder,
    GPTNeoXTokenDecoder,
    LookupEmbedder,
)

__all__ = [
    "PAPER",
    "PROJECTION_METHODS",
    "BlockTransformer",
    "BlockTransformerState",
    "GPTNeoXBlockDecoder",
    "GPTNeoXLM",
    "GPTNeoXLayer",
    "GPTNeoXStack",
    "GPTNeoXTokenDecoder",
    "LookupEmbedder",
    "block_main_b4_85",
    "block_transformer_tiny",
    "vanilla_baseline",
]
