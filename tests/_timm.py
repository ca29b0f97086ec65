"""timm for tests, without torchvision.

timm (a test-only reference for parameter counts and state-dict layouts) imports torchvision for its data
transforms and a few norm layers, and torchvision pulls a multi-GB CUDA build on these machines. timm is installed
with ``pip install --no-deps`` (see ``.ci/run``), and this module stands in for torchvision with empty modules
before importing it. Only timm's model constructors are used, which never call torchvision.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def import_timm():
    """Import timm with torchvision stood in for (only if the real torchvision is not installed)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        if not any(isinstance(f, _TorchvisionStandIn) for f in sys.meta_path):
            sys.meta_path.insert(0, _TorchvisionStandIn())
    import timm

    return timm
