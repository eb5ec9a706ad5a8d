"""Deprecated path: the box moved to :mod:`airflow_provider_worktree.core.sandbox.box` in 0.2.0.

``from airflow_provider_worktree.core.box import bwrap_status`` (the path docs/security.md showed up to 0.1) keeps
working with a :class:`DeprecationWarning` until 0.3; import from ``airflow_provider_worktree.core.sandbox``.
"""

from __future__ import annotations

import warnings

from airflow_provider_worktree.core.sandbox.box import *  # noqa: F401,F403 - the old module's public names
from airflow_provider_worktree.core.sandbox.box import __all__  # noqa: F401

warnings.warn("airflow_provider_worktree.core.box is deprecated since 0.2.0: import from "
              "airflow_provider_worktree.core.sandbox (e.g. `from airflow_provider_worktree.core.sandbox import "
              "bwrap_status`)", DeprecationWarning, stacklevel=2)
