"""Model families: importing this package imports every module in it, and each module registers its models
(see :func:`archlab.zoo.list_models`). A new family is a new file here; nothing else needs editing."""

import sys

from archlab.zoo._discover import import_submodules

import_submodules(sys.modules[__name__])

from archlab.zoo.models.metaformer import MetaFormer  # noqa: E402

__all__ = ["MetaFormer"]
