"""``python -m airflow_provider_worktree.cli``."""

import sys

from airflow_provider_worktree.cli.main import main

sys.exit(main())
