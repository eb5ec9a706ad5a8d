"""Airflow hooks: thin faces over the core modules."""
