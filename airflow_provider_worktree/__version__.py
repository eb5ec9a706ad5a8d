"""Single source of the package version (read by setuptools without importing Airflow)."""

__version__ = "0.1.0"
