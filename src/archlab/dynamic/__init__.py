"""archlab.dynamic: networks whose compute depends on the input.

- :mod:`archlab.dynamic.acm`: Adaptive Computation Modules (a per-token number of learners, gated).
- :mod:`archlab.dynamic.eco_m2f`: ECO-M2F's early exiting with a learned gate over a multi-exit encoder.
- :mod:`archlab.dynamic.cbnet`: CBNet's converting autoencoder in front of a light classifier.
- :mod:`archlab.dynamic.mue`: MuE's multiple exiting: encoder and decoder layers skipped once consecutive-layer
  similarity saturates (per input and token group, per generated token), trained with a layer-wise loss.
"""
