"""archlab.compress: making a trained network cheaper to run.

- :mod:`archlab.compress.mohawk`: cross-architecture distillation of an attention language model into a
  Mamba-2 (SSD) one, MOHAWK's three stages.
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
