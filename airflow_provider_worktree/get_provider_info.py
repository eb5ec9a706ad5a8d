"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from airflow_provider_worktree.__version__ import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-worktree",
        "name": "Git Worktree Maintenance",
        "description": "Parallel, AI-driven maintenance of Git repositories: shards, isolated git worktrees, "
        "Claude with tools confined to each worktree, a shard status database with leases.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Git Worktree Maintenance",
                "external-doc-url": "https://git-scm.com/docs/git-worktree",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Git Worktree Maintenance",
                "python-modules": [
                    "airflow_provider_worktree.hooks.git_worktree",
                    "airflow_provider_worktree.hooks.shard_status",
                    "airflow_provider_worktree.hooks.gitlab",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Git Worktree Maintenance",
                "python-modules": ["airflow_provider_worktree.operators.plan",
                                   "airflow_provider_worktree.operators.maintenance",
                                   "airflow_provider_worktree.operators.batch",
                                   "airflow_provider_worktree.operators.changesets"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Git Worktree Maintenance",
                "python-modules": ["airflow_provider_worktree.sensors.shard_status",
                                   "airflow_provider_worktree.sensors.changesets"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Git Worktree Maintenance",
                "python-modules": ["airflow_provider_worktree.triggers.shard_status",
                                   "airflow_provider_worktree.triggers.batch",
                                   "airflow_provider_worktree.triggers.changesets"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_worktree.hooks.gitlab.GitLabHook",
                "hook-name": "GitLab",
                "connection-type": "gitlab",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"host": "GitLab URL", "password": "Access token (api scope)"},
                    "placeholders": {"host": "https://gitlab.com or https://gitlab.example.com",
                                     "password": "glpat-..."},
                },
                "conn-fields": {},
            },
            {
                "hook-class-name": "airflow_provider_worktree.hooks.git_worktree.GitWorktreeHook",
                "hook-name": "Git Worktree",
                "connection-type": "git_worktree",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Repository (local path or URL)",
                        "login": "Username (for HTTPS remotes)",
                        "password": "Access token (for HTTPS remotes)",
                    },
                    "placeholders": {
                        "host": "/srv/repos/project or https://github.com/org/project.git",
                    },
                },
                "conn-fields": {
                    "worktree_root": {
                        "label": "Worktree root",
                        "schema": {"type": ["string", "null"]},
                        "description": "Directory under which shard worktrees are created. Must be outside "
                        "the repository's work tree. Default: $AIRFLOW_HOME/worktrees.",
                    },
                    "cache_dir": {
                        "label": "Clone cache directory",
                        "schema": {"type": ["string", "null"]},
                        "description": "Per-worker directory for clones of remote repositories. "
                        "Default: $AIRFLOW_HOME/worktree-cache.",
                    },
                    "author_name": {
                        "label": "Commit author name",
                        "schema": {"type": ["string", "null"], "default": "airflow-worktree"},
                    },
                    "author_email": {
                        "label": "Commit author email",
                        "schema": {"type": ["string", "null"], "default": "airflow-worktree@localhost"},
                    },
                    "base_ref": {
                        "label": "Default base ref",
                        "schema": {"type": ["string", "null"], "default": "HEAD"},
                    },
                    "git_conn_id": {
                        "label": "Git connection for credentials",
                        "schema": {"type": ["string", "null"]},
                        "description": "Optional id of an official git provider connection whose "
                        "credentials are used for fetch and push.",
                    },
                },
            },
            {
                "hook-class-name": "airflow_provider_worktree.hooks.shard_status.ShardStatusHook",
                "hook-name": "Shard Status",
                "connection-type": "shard_status",
                "ui-field-behaviour": {
                    "hidden-fields": ["port", "login", "password", "schema"],
                    "relabeling": {"host": "SQLite file path"},
                    "placeholders": {"host": "/var/lib/airflow/shard_status.db"},
                },
                "conn-fields": {
                    # "dsn": a sensitive name, so Airflow masks the value (with its password) in the UI, the
                    # REST API and logs; "format: password" makes the form field a password input.
                    "dsn": {
                        "label": "Database URL (DSN)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                        "description": "Instead of a file path: sqlite:////abs/path or "
                        "postgresql://user:password@host:5432/db. Masked like a password. "
                        "(A connection of type sqlite or postgres works too.)",
                    },
                },
            },
        ],
        # `airflow worktree ...`: the airflow-worktree commands inside Airflow's own CLI.
        "cli": ["airflow_provider_worktree.cli.get_provider_cli_commands"],
        "config": {
            "worktree": {
                "description": "Defaults for airflow-provider-worktree.",
                "options": {
                    "worktree_root": {
                        "description": "Default directory for shard worktrees when the git_worktree "
                        "connection sets none (per worker: AIRFLOW__WORKTREE__WORKTREE_ROOT).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/lib/airflow/worktrees",
                        "default": None,
                    },
                    "cache_dir": {
                        "description": "Default per-worker directory for clones of remote repositories "
                        "(set it per Celery worker or Kubernetes pod with AIRFLOW__WORKTREE__CACHE_DIR).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/cache/airflow/worktree-cache",
                        "default": None,
                    },
                    "preload_in_scheduler": {
                        "description": "Import the Anthropic SDK in the scheduler before it forks its "
                        "LocalExecutor workers, so that task processes do not each pay for the import "
                        "(about 0.9 s of CPU per task).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "ui_allow_reset": {
                        "description": "Offer resetting stale shards in the Worktree shards dashboard (the user "
                        "still needs the permission to clear the DAG's task instances).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                    "shard_status_conn_id": {
                        "description": "Connection id of the shard status database (read by "
                        "ShardStatusHook, the operators, the sensor and the CLI when no connection is named).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": None,
                        "default": "shard_status_default",
                    },
                },
            }
        },
    }
