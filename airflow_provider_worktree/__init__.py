"""airflow-provider-worktree: parallel, AI-driven maintenance of Git repositories for Apache Airflow 3.

The ``core`` subpackage is plain Python (no Airflow import) and usable from the ``airflow-worktree``
command on a machine without Airflow; ``hooks``, ``operators``, ``sensors`` and ``triggers`` are the
Airflow faces over it.
"""

from __future__ import annotations

from airflow_provider_worktree.__version__ import __version__

__all__ = ["__version__", "MIN_AIRFLOW_VERSION", "check_airflow_version"]

#: The oldest supported Apache Airflow, written once: the runtime check below and ``version_compat`` read it;
#: pyproject.toml's ``apache-airflow>=`` floor is the same (tests/test_airflow_versions.py checks it), and CI runs a
#: test subset on exactly this version (scripts/test_oldest.sh).
MIN_AIRFLOW_VERSION = "3.1.8"


def check_airflow_version() -> None:
    """Raise a clear RuntimeError when the installed Airflow is older than supported.

    Called by the Airflow-facing subpackages (hooks, operators, sensors, triggers) so that the core
    modules and the ``airflow-worktree --db`` command never import Airflow.
    """
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # core and CLI work without Airflow installed
        return
    import packaging.version

    installed = packaging.version.parse(packaging.version.parse(airflow_version).base_version)
    if installed < packaging.version.parse(MIN_AIRFLOW_VERSION):
        raise RuntimeError(
            f"The package `airflow-provider-worktree:{__version__}` needs Apache Airflow "
            f"{MIN_AIRFLOW_VERSION}+ but Airflow {airflow_version} is installed. "
            f"Upgrade with: pip install 'apache-airflow>={MIN_AIRFLOW_VERSION},<4'"
        )

