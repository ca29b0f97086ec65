"""archlab.space: the search-space language and the predefined spaces.

``choice``, ``integer``, ``real``, ``repeat``, ``optional`` and ``module`` declare decisions; nested
``dict``\\ s group them; a :class:`Space` samples, mutates, crosses over, enumerates, counts and encodes
:class:`Arch` genotypes and builds them into models; it lists its decisions (:class:`Decision`) for supernets
and Optuna, inverts ``to_params`` (``from_params``), gives its smallest and largest archs (``extreme``) and a
``fingerprint`` that pins it. Predefined spaces are made with :func:`create_space`.
"""

from archlab.space._arch import Arch, FrozenDict
from archlab.space._nodes import (
    Bound,
    Choice,
    Constant,
    Decision,
    Integer,
    Module,
    Node,
    Optional,
    Real,
    Repeat,
    Struct,
    choice,
    integer,
    module,
    optional,
    real,
    repeat,
)
from archlab.space._predefined import create_space, list_spaces, register_space
from archlab.space._space import Space, as_rng

__all__ = [
    "Arch",
    "Bound",
    "Choice",
    "Constant",
    "Decision",
    "FrozenDict",
    "Integer",
    "Module",
    "Node",
    "Optional",
    "Real",
    "Repeat",
    "Space",
    "Struct",
    "as_rng",
    "choice",
    "create_space",
    "integer",
    "list_spaces",
    "module",
    "optional",
    "real",
    "register_space",
    "repeat",
]
