"""archlab.measure: parameters, FLOPs, CPU latency and peak memory of a model, or of a zoo model by name."""

from archlab.measure._measure import (
    count_flops,
    count_params,
    example_input,
    measure_latency,
    peak_activation_bytes,
    profile_model,
)
from archlab.measure._profile import profile_zoo_model, zoo_model_counts

__all__ = ["count_flops", "count_params", "example_input", "measure_latency", "peak_activation_bytes",
           "profile_model", "profile_zoo_model", "zoo_model_counts"]
