"""Which Airflow this is, and the few names that moved between the supported minors: decided here, once.

Modelled on the official providers' ``version_compat.py`` (``airflow/providers/standard/version_compat.py``):
version constants, then the names whose home depends on them. The operators, sensor, trigger, hooks and example
DAGs import these names from here and never test the Airflow version themselves.

What differs across the supported minors (3.1, 3.2, 3.3):

- Airflow 3.2 moved the task exceptions (``AirflowFailException``, ``AirflowSkipException``, ``TaskDeferred``...),
  ``conf`` and ``Stats`` into the Task SDK (``airflow.sdk``); on 3.1 they live in ``airflow.exceptions``,
  ``airflow.configuration`` and ``airflow.stats`` (the same classes the 3.1 task runner catches).
- Airflow 3.2 added the provider-info ``cli`` section: ``airflow worktree ...`` exists from 3.2 on. On 3.1 the
  same commands are the ``airflow-worktree`` console script (Airflow 3.1 has no way for a provider to add an
  ``airflow`` subcommand).
- The human-in-the-loop operators (``airflow.providers.standard.operators.hitl``) need Airflow 3.1 and a standard
  provider that ships them: ``ApprovalOperator`` is None where the installed one does not (the example DAG then
  publishes without waiting for an approval, and says so in its log).

Imports no Airflow at module level beyond ``airflow.__version__`` for the constants; the shims below import
Airflow, so ``core`` and the ``airflow-worktree`` command never import this module.
"""

from __future__ import annotations

# The oldest supported Airflow is written once, in the package's __init__ (importable without Airflow, for the
# runtime check); pyproject.toml's ``apache-airflow>=`` floor repeats it and tests/test_airflow_versions.py checks
# that the two agree. CI tests that version (scripts/test_oldest.sh).
from airflow_provider_worktree import MIN_AIRFLOW_VERSION


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    from airflow import __version__
    from packaging.version import Version

    airflow_version = Version(__version__)
    return airflow_version.major, airflow_version.minor, airflow_version.micro


AIRFLOW_V_3_1_PLUS: bool = get_base_airflow_version_tuple() >= (3, 1, 0)
AIRFLOW_V_3_2_PLUS: bool = get_base_airflow_version_tuple() >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS: bool = get_base_airflow_version_tuple() >= (3, 3, 0)

#: ``airflow worktree ...`` (the provider-info ``cli`` section) is read by Airflow 3.2+.
AIRFLOW_CLI_COMMANDS_SUPPORTED: bool = AIRFLOW_V_3_2_PLUS

if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        ParamValidationError,
        TaskDeferred,
    )
    from airflow.sdk.observability.stats import Stats
else:
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        ParamValidationError,
        TaskDeferred,
    )
    from airflow.stats import Stats  # type: ignore[no-redef]

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
except ImportError:  # a standard provider older than the HITL operators
    ApprovalOperator = None  # type: ignore[assignment,misc]

__all__ = [
    "AIRFLOW_CLI_COMMANDS_SUPPORTED",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "MIN_AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "ApprovalOperator",
    "ParamValidationError",
    "Stats",
    "TaskDeferred",
    "conf",
]
