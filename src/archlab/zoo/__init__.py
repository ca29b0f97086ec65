"""archlab.zoo: every building block and model family, behind one registry.

Importing this package registers every mixer and model it ships.
"""

from archlab.zoo import mixers as _mixers  # noqa: F401  (registers mixers)
from archlab.zoo import models as _models  # noqa: F401  (registers models)
from archlab.zoo._registry import (
    MixerSpec,
    create_mixer,
    create_model,
    get_mixer_spec,
    list_mixers,
    list_models,
    model_info,
    register_mixer,
    register_model,
)

__all__ = [
    "MixerSpec",
    "create_mixer",
    "create_model",
    "get_mixer_spec",
    "list_mixers",
    "list_models",
    "model_info",
    "register_mixer",
    "register_model",
]
