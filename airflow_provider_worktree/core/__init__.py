"""Core modules: plain Python, no Airflow import. Usable from the CLI and from tests without an Airflow runtime."""
