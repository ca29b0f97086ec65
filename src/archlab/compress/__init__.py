"""archlab.compress: making a trained network cheaper to run (``archlab compress`` on a run: :mod:`._run`).

- :mod:`archlab.compress.mohawk`: cross-architecture distillation of an attention language model into a
  Mamba-2 (SSD) one, MOHAWK's three stages.
- :mod:`archlab.compress.maestro`: trainable low-rank decomposition with ordered dropout (Maestro), and the SVD
  truncation baseline.
- :mod:`archlab.compress.quantize`: INT8 post-training quantisation (dynamic, static QDQ, per-layer mixed
  precision) and quantisation-aware training, through ONNX Runtime.
- :mod:`archlab.compress.nvit`: NViT's global structural pruning of a ViT (Hessian-aware group saliency, latency
  table, distillation), and uniform pruning as the baseline.
- :mod:`archlab.compress.n2n`: N2N's two-stage reinforcement-learned compression (layer removal, shrinkage).
- :mod:`archlab.compress.mmmamba`: mmMamba's Mamba-2 layers seeded from a multimodal decoder's attention, its three
  distillation stages and hybrids.
"""

from archlab.compress.mohawk import (
    STAGES,
    MohawkResult,
    distilled_layers,
    hidden_state_alignment_loss,
    knowledge_distillation_loss,
    matrix_orientation_loss,
    mohawk_distill,
    teacher_hidden_states,
    transfer_weights,
)

__all__ = ["STAGES", "MohawkResult", "distilled_layers", "hidden_state_alignment_loss", "knowledge_distillation_loss",
           "matrix_orientation_loss", "mohawk_distill", "teacher_hidden_states", "transfer_weights"]
