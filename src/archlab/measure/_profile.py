"""Measurements of registered zoo models, by name: what ``archlab zoo list`` and ``archlab zoo profile`` show.

:func:`zoo_model_counts` counts parameters and FLOPs on the meta device (shapes only, no weights allocated), so
listing even multi-billion-parameter models costs nothing; :func:`profile_zoo_model` builds the model for real
and adds CPU latency and peak activation memory (:func:`archlab.measure.profile_model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from archlab.errors import UserError
from archlab.measure._measure import count_flops, count_params, profile_model

__all__ = ["profile_zoo_model", "zoo_model_counts"]


#: Models up to this many parameters are built for real when their FLOPs cannot be counted on the meta device.
_REAL_BUILD_LIMIT = 500_000_000


def zoo_model_counts(name: str) -> dict[str, Any]:
    """Name, family, paper, input shape, params and FLOPs (at the registered default input) of a zoo model.

    ``params`` / ``flops`` are None where they cannot be counted (FLOPs of a model without a default input; a
    model with an op that has no meta kernel, whose ``error`` then says why). An unknown name is a
    :class:`~archlab.errors.UserError`.
    """
    from archlab import zoo

    info = zoo.model_info(name)
    row: dict[str, Any] = {"name": name, "family": info["family"], "paper": info["paper"],
                           "input_shape": list(info["input_shape"]) if info["input_shape"] else None,
                           "params": None, "flops": None}
    try:
        with torch.device("meta"):  # shapes only: even multi-billion-parameter models cost nothing to count
            model = zoo.create_model(name)
        row["params"] = count_params(model)
        if info["input_shape"]:
            try:
                row["flops"] = count_flops(model, info["input_shape"], input_dtype=info["input_dtype"])
            except (RuntimeError, NotImplementedError):  # a data-dependent op (unpadding's nonzero, say)
                if row["params"] > _REAL_BUILD_LIMIT:
                    raise
                with torch.random.fork_rng():  # count on a real model: the same FLOPs, at some memory and time
                    real = zoo.create_model(name)
                row["flops"] = count_flops(real, info["input_shape"], input_dtype=info["input_dtype"])
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:  # an op without a meta kernel
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    return row


def profile_zoo_model(name: str, latency_batches: Sequence[int] = (1,), repeats: int = 10) -> dict[str, Any]:
    """``name``, ``input_shape`` and :func:`~archlab.measure.profile_model`'s params, FLOPs, CPU latency at each
    of ``latency_batches`` and peak activation bytes, at the model's registered default input.

    An unknown model, one without a default input shape, or bad batch sizes / repeats are a
    :class:`~archlab.errors.UserError`.
    """
    from archlab import zoo

    if not latency_batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in latency_batches):
        raise UserError(f"latency batch sizes must be positive integers, got {list(latency_batches)!r}")
    if repeats < 1:
        raise UserError(f"repeats must be >= 1, got {repeats}")
    info = zoo.model_info(name)
    if not info["input_shape"]:
        raise UserError(f"model {name!r} has no registered default input shape to profile at")
    model = zoo.create_model(name)
    result = profile_model(model, info["input_shape"], latency_batches=latency_batches, repeats=repeats,
                           input_dtype=info["input_dtype"], memory=True)
    return {"name": name, "input_shape": list(info["input_shape"]), **result}
