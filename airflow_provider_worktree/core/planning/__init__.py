"""Shard planning: a repository and a task in, a list of disjoint shards out (:func:`plan_repository`,
:func:`plan_shards`, :class:`Plan`).

May import: ``core.errors``, ``core.git``, ``core.files`` and ``core.tasks``. Plain Python, no Airflow.
"""
