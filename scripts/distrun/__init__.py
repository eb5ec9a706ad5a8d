"""The distributed run (``scripts/distributed_run.py``): a CeleryExecutor deployment on this machine, its
scenarios and checks. May import ``harness``; runs in the project's venv."""
