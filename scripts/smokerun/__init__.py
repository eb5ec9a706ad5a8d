"""The smoke run (``./scripts/smoke_run.sh``), in modules: options, set-up phases, the DAG run, verification,
output. Standard library only: it runs before the project's venv exists. May import ``harness``."""
