"""The shard dashboard: JSON views of the shard database (``data``, plain Python) and the Airflow api-server
app that serves them with a page (``app``, mounted by ``WorktreePlugin``)."""
