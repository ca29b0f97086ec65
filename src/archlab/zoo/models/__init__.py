"""Model families: importing this package registers each of them (see :func:`archlab.zoo.list_models`)."""

from archlab.zoo.models import metaformer  # noqa: F401  (registers models)
from archlab.zoo.models.metaformer import MetaFormer

__all__ = ["MetaFormer"]
