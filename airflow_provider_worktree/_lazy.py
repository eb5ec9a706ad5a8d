"""Lazy re-exports for the hooks/operators/sensors/triggers subpackages (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """Return a module ``__getattr__`` importing ``names[attr]`` on first access, and ``__all__``."""

    def __getattr__(attr: str) -> object:
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}; it exports {sorted(names)}")
        return getattr(importlib.import_module(names[attr]), attr)

    return __getattr__, sorted(names)
