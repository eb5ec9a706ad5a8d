"""The provider's Airflow plugin (declared in ``get_provider_info()["plugins"]``, so installing the package is enough)."""
