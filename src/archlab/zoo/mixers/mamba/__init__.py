"""Mamba: the selective state-space block, its scans, its initialisations and the Mamba language model.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752 (2023),
COLM 2024; reference: state-spaces/mamba at commit 52f57d6. Mimetic initialisation: Trockman, Harutyunyan, Kolter,
Kumar & Bhojanapalli, "Mimetic Initialization Helps State Space Models Learn to Recall" (2024).

One home per idea:

- :mod:`~archlab.zoo.mixers.mamba.scan`: the selective scan, as the reference's sequential loop and as the chunked
  form used for training;
- :mod:`~archlab.zoo.mixers.mamba.block`: the :class:`Mamba` block (the ``"mamba"`` mixer) and its decoding state
  :class:`MambaState`;
- :mod:`~archlab.zoo.mixers.mamba.init`: the mimetic initialisation and the language model's weight scheme;
- :mod:`~archlab.zoo.mixers.mamba.lm`: :class:`MambaLMHeadModel` and the ``mamba_lm`` / ``mamba_130m`` ... models.

Importing this package imports ``block`` and ``lm``, which register the mixer and the models (once: a module runs
once). The causal convolution the block shares with other mixers is :mod:`archlab.zoo.layers.causal_conv`.
"""

from archlab.zoo.layers.causal_conv import causal_depthwise_conv
from archlab.zoo.mixers.mamba.block import PAPER, SCANS, Mamba, MambaState, create_mamba
from archlab.zoo.mixers.mamba.init import MIMETIC_A_SCALE, mimetic_init_
from archlab.zoo.mixers.mamba.lm import Block, MambaLMHeadModel, MixerModel, mamba_lm
from archlab.zoo.mixers.mamba.scan import default_chunk_size, selective_scan_chunked, selective_scan_ref

__all__ = [
    "MIMETIC_A_SCALE",
    "PAPER",
    "SCANS",
    "Block",
    "Mamba",
    "MambaLMHeadModel",
    "MambaState",
    "MixerModel",
    "causal_depthwise_conv",
    "create_mamba",
    "default_chunk_size",
    "mamba_lm",
    "mimetic_init_",
    "selective_scan_chunked",
    "selective_scan_ref",
]
