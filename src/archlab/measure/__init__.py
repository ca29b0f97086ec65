"""archlab.measure: parameters, FLOPs, CPU latency and peak memory of a model."""

from archlab.measure._measure import (
    count_flops,
    count_params,
    example_input,
    measure_latency,
    peak_activation_bytes,
    profile_model,
)

__all__ = ["count_flops", "count_params", "example_input", "measure_latency", "peak_activation_bytes",
           "profile_model"]
