"""Lazy re-exports for the hooks/operators/sensors/triggers subpackages (PEP 562)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping


def lazy_exports(package: str, names: dict[str, str],
                 deprecated: Mapping[str, str] | None = None) -> tuple[Callable[[str], object], list[str]]:
    """Return a module ``__getattr__`` importing ``names[attr]`` on first access, and ``__all__``.

    ``deprecated`` maps names that moved to the package they now live in: they still resolve (from that
    package) with a :class:`DeprecationWarning` naming the new path, and are left out of ``__all__``.
    """
    moved = dict(deprecated or {})

    def __getattr__(attr: str) -> object:
        if attr in names:
            return getattr(importlib.import_module(names[attr]), attr)
        if attr in moved:
            warnings.warn(f"{package}.{attr} is deprecated since 0.2.0 and goes in 0.3: import it from "
                          f"{moved[attr]} (`from {moved[attr]} import {attr}`)", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(moved[attr]), attr)
        raise AttributeError(f"module {package!r} has no attribute {attr!r}; it exports {sorted(names)}")

    return __getattr__, sorted(names)
