"""The shard dashboard as a FastAPI app, mounted by the Airflow 3 api-server at ``/worktree`` (``WorktreePlugin``).

A thin face: the figures come from :mod:`airflow_provider_worktree.ui.data`, the database from
:class:`~airflow_provider_worktree.hooks.shard_status.ShardStatusHook` (``[worktree] shard_status_conn_id``,
else ``shard_status_default``, else ``$AIRFLOW_HOME/shard_status.db``). What only Airflow knows is added here:
the DAG of each run and links to the task instances' logs (a shard's ``worker_id`` is ``host:pid`` of the task
process, which Airflow records on the task instance).

Access goes through the api-server's auth manager with the Airflow UI's own token (its ``_token`` cookie or an
``Authorization: Bearer`` header): every JSON view needs read access to DAGs (and to the run's DAG when Airflow
knows it; a changeset whose run is a DAG run the user may not read is left out); the one action, resetting
stale shards, needs the permission to clear task instances of the run's DAG and ``[worktree] ui_allow_reset =
True``. The page itself (HTML, script, style) holds no shard data.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.forge.types import EXTERNAL_STATES
from airflow_provider_worktree.core.store import ShardNotFound, ShardStore, connection_factory
from airflow_provider_worktree.hooks.shard_status import DEFAULT_CONN_ID, ShardStatusHook
from airflow_provider_worktree.ui import data

STATIC = Path(__file__).with_name("static")
URL_PREFIX = "/worktree"

_hooks: dict[str, ShardStatusHook] = {}
_stores: dict[str, ShardStore] = {}  # read-only stores, one per database
_hooks_lock = threading.Lock()


# ------------------------------------------------------------------------------------------- config
def _conf(key: str, fallback: Any = None) -> Any:
    from airflow.configuration import conf

    return conf.get("worktree", key, fallback=fallback)


def _allow_reset() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("worktree", "ui_allow_reset", fallback=False)


def _worktree_root() -> tuple[str, str]:
    """(the worktree root the Health page measures, where it comes from): ``[worktree] worktree_root``, else the
    default the maintain tasks use (``$AIRFLOW_HOME/worktrees``; a connection's ``worktree_root`` extra is per
    repository and not read here)."""
    from airflow_provider_worktree.core.git.repo import default_worktree_root

    configured = _conf("worktree_root") or None
    if configured:
        return configured, "[worktree] worktree_root"
    return default_worktree_root(), "the default of the maintain tasks ([worktree] worktree_root not set)"


def _no_shards_message(dag_id: str, run_id: str) -> str:
    """Why a DAG run has no shard, said neutrally: its plan found nothing, is not done yet, failed, or the DAG
    plans no shards at all (the Shards tab is on every DAG run)."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        states = session.execute(select(TaskInstance.state).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
            TaskInstance.operator == "ShardPlanOperator")).scalars().all()
    states = {str(getattr(st, "value", st)) for st in states}
    if not states:
        return "this DAG run plans no shards (its DAG has no ShardPlanOperator task)"
    if states <= {"success", "skipped"}:
        return data.NO_SHARDS
    if states & {"failed", "upstream_failed"}:
        return "this run planned no shards: its plan task failed (its log says why)"
    return "no shard registered yet: the run's plan task has not finished"


# ------------------------------------------------------------------------------------------- store
def _hook() -> ShardStatusHook | None:
    """The hook of the configured shard database, or None while a SQLite database does not exist yet (the
    dashboard reads: it never creates one)."""
    conn_id = _conf("shard_status_conn_id", DEFAULT_CONN_ID) or DEFAULT_CONN_ID
    probe = ShardStatusHook(shard_status_conn_id=conn_id)
    try:
        target = probe.target
        if "://" not in target and not os.path.isfile(os.path.abspath(os.path.expanduser(target))):
            return None  # a SQLite file (or its directory) not made yet
        _, dialect, path = connection_factory(target)
    except WorktreeProviderError as exc:
        raise HTTPException(500, f"shard database: {exc}") from None
    if dialect == "sqlite" and not os.path.isfile(path):
        return None
    with _hooks_lock:  # one hook (and store: one connection per thread) per database
        hook = _hooks.get(target)
        if hook is None:
            hook = _hooks[target] = probe
    return hook


def _store() -> Any:
    """A read-only store of the configured database: the dashboard never creates, migrates or writes (an older
    schema is read through an upgraded in-memory copy, made afresh per request so it stays current)."""
    hook = _hook()
    if hook is None:
        return None
    with _hooks_lock:
        store = _stores.get(hook.target)
    if store is not None:
        return store
    try:
        store = ShardStore.open(hook.target, read_only=True)
    except WorktreeProviderError as exc:
        raise HTTPException(500, f"shard database {hook.target.split('@')[-1]}: {exc}") from None
    if store.upgraded_from is None:
        with _hooks_lock:
            store = _stores.setdefault(hook.target, store)
    return store


# ------------------------------------------------------------------------------------------- auth
def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _can(user: Any, method: str, dag_id: str | None = None, clear: bool = False) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    details = DagDetails(id=dag_id) if dag_id else None
    entity = DagAccessEntity.TASK_INSTANCE if clear else None
    return bool(_auth_manager().is_authorized_dag(method=method, access_entity=entity, details=details, user=user))


# ------------------------------------------------------------------------------------------- Airflow facts
def _dag_ids(run_ids: list[str]) -> dict[str, str]:
    """Airflow's DAG id of each run id it knows (shard runs are Airflow run ids)."""
    if not run_ids:
        return {}
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(select(DagRun.run_id, DagRun.dag_id).where(DagRun.run_id.in_(run_ids))).all()
    return {run_id: dag_id for run_id, dag_id in rows}


def _task_instances(dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The run's task instances (every try) by (short host name, pid): task id and map index."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    found: dict[tuple[str, int], dict[str, Any]] = {}
    with create_session() as session:
        for model in (TaskInstanceHistory, TaskInstance):  # the current try wins
            rows = session.execute(select(model.task_id, model.map_index, model.try_number, model.hostname,
                                          model.pid).where(model.dag_id == dag_id, model.run_id == run_id)).all()
            for task_id, map_index, try_number, hostname, pid in rows:
                if hostname and pid:
                    found[(hostname.split(".")[0], int(pid))] = {"task_id": task_id, "map_index": map_index,
                                                                 "try_number": try_number}
    return found


def _ti_path(dag_id: str, run_id: str, ti: dict[str, Any] | None) -> str:
    """The Airflow UI path (relative to its base URL) of a task instance (its log), or of the DAG run."""
    from urllib.parse import quote

    path = f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    if ti is None:
        return path
    path += f"/tasks/{quote(ti['task_id'], safe='')}"
    if ti["map_index"] is not None and ti["map_index"] >= 0:
        path += f"/mapped/{ti['map_index']}"
    return path


def _log_path(dag_id: str | None, run_id: str, tis: dict[tuple[str, int], dict[str, Any]],
              worker_id: str | None) -> str | None:
    """The log of the task instance that ran as ``worker_id`` (``host:pid``), None when no try matches."""
    host, _, pid = (worker_id or "").rpartition(":")
    ti = tis.get((host.split(".")[0], int(pid))) if host and pid.isdigit() else None
    return _ti_path(dag_id, run_id, ti) if dag_id and ti else None


def _readable(user: Any, dag_id: str | None) -> bool:
    return dag_id is None or _can(user, "GET", dag_id)


def _json(payload: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(payload, default=str, separators=(",", ":")), status_code=status_code,
                    media_type="application/json")


def _stale_after(value: float | None) -> float:
    return float(value) if value is not None else data.DEFAULT_STALE_AFTER_S


# ------------------------------------------------------------------------------------------- the app
def create_app() -> FastAPI:
    """The dashboard app: the page at ``/``, JSON under ``/api`` (see docs/ui.md)."""
    from airflow.api_fastapi.core_api.security import get_user

    async def dag_reader(user: Any = Depends(get_user)) -> Any:
        """Every JSON view: a valid token (401 otherwise) of a user who may read DAGs (403 otherwise)."""
        if not _can(user, "GET"):
            raise HTTPException(403, "Forbidden: reading the shard dashboard needs read access to DAGs")
        return user

    app = FastAPI(title="Worktree shards", description="The shard database of airflow-provider-worktree, read-only "
                  "(one action: reset stale shards, when enabled).", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    stale_q = Query(None, gt=0, description="seconds without heartbeat after which a running shard is stale "
                    f"(default {data.DEFAULT_STALE_AFTER_S:g}, as `airflow-worktree check`)")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in {"app.js", "app.css"}:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    @app.get("/api/runs")
    def runs(user: Any = Depends(dag_reader), stale_after: float | None = stale_q) -> Response:
        """Every run the user may read: counts per status, progress, duration, tokens, cost, verdict."""
        store = _store()
        if store is None:
            return _json({"runs": [], "database": None, "message": "no shard database yet"})
        view = data.runs_view(store, stale_after_s=_stale_after(stale_after))
        dag_ids = _dag_ids([r["run_id"] for r in view["runs"]])
        readable = {d for d in set(dag_ids.values()) if _can(user, "GET", d)}
        view["runs"] = [{**r, "dag_id": dag_ids.get(r["run_id"])} for r in view["runs"]
                        if dag_ids.get(r["run_id"]) is None or dag_ids[r["run_id"]] in readable]
        view["database"] = store.description
        return _json(view)

    @app.get("/api/run")
    def run(run_id: str, user: Any = Depends(dag_reader), stale_after: float | None = stale_q) -> Response:
        """One run: totals, verdict and one row per shard, with links to the task instances."""
        store = _store()
        dag_id = _dag_ids([run_id]).get(run_id)
        if not _readable(user, dag_id):
            raise HTTPException(403, f"Forbidden: you may not read DAG {dag_id}")
        view = (data.run_view(store, run_id, stale_after_s=_stale_after(stale_after), known_run=dag_id is not None)
                if store is not None else None)
        if view is None:
            raise HTTPException(404, f"run {run_id!r} has no shard in the shard database and is no DAG run of this "
                                "Airflow: check the run id")
        if not view["shards"] and dag_id is not None:
            view["message"] = _no_shards_message(dag_id, run_id)
        tis = _task_instances(dag_id, run_id) if dag_id else {}
        for shard in view["shards"]:
            shard["log_path"] = _log_path(dag_id, run_id, tis, shard["worker_id"])
        view["dag_id"] = dag_id
        view["dag_run_path"] = _ti_path(dag_id, run_id, None) if dag_id else None
        view["can_reset"] = _allow_reset() and _can(user, "PUT", dag_id, clear=True)
        return _json(view)

    @app.get("/api/shard")
    def shard(run_id: str, shard_id: str, user: Any = Depends(dag_reader),
              stale_after: float | None = stale_q) -> Response:
        """One shard: files, diffstat, verify output tail, result summary, every attempt (schema v3)."""
        store = _store()
        dag_id = _dag_ids([run_id]).get(run_id)
        if not _readable(user, dag_id):
            raise HTTPException(403, f"Forbidden: you may not read DAG {dag_id}")
        try:
            if store is None:
                raise ShardNotFound("no shard database yet")
            view = data.shard_view(store, run_id, shard_id, stale_after_s=_stale_after(stale_after))
        except ShardNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        tis = _task_instances(dag_id, run_id) if dag_id else {}
        view["dag_id"] = dag_id
        view["dag_run_path"] = _ti_path(dag_id, run_id, None) if dag_id else None
        view["log_path"] = _log_path(dag_id, run_id, tis, view["worker_id"])
        for attempt in view["attempts"] or []:
            attempt["log_path"] = _log_path(dag_id, run_id, tis, attempt.get("worker_id"))
        return _json(view)

    @app.get("/api/batches")
    def batches(run_id: str, user: Any = Depends(dag_reader)) -> Response:
        """The run's Message Batches (batch mode): each batch's id, part, status, request counts, submitted and
        ended times and the spend of its entries; the entries' states (as `airflow-worktree batches`)."""
        store = _store()
        dag_id = _dag_ids([run_id]).get(run_id)
        if not _readable(user, dag_id):
            raise HTTPException(403, f"Forbidden: you may not read DAG {dag_id}")
        view = data.batches_view(store, run_id)  # no database yet: no batch
        view["database"] = store.description if store is not None else None
        return _json(view)

    @app.get("/api/health")
    def health(run_id: str | None = None, user: Any = Depends(dag_reader),
               stale_after: float | None = stale_q) -> Response:
        """The thresholds of `airflow-worktree check`, over the database or one run."""
        if run_id is not None:
            dag_id = _dag_ids([run_id]).get(run_id)
            if not _readable(user, dag_id):
                raise HTTPException(403, f"Forbidden: you may not read DAG {dag_id}")
        store = _store()
        if store is None:
            return _json({"level": "ok", "metrics": [], "actions": [], "database": None,
                          "message": "no shard database yet"})
        root, source = _worktree_root()
        view = data.health_view(store, run_id=run_id, worktree_root=root, worktree_root_source=source,
                                stale_after_s=_stale_after(stale_after))
        view["database"] = store.description
        return _json(view)

    def readable_changesets(user: Any, store: Any, repository: str | None, state: str | None,
                            run_id: str | None) -> dict[str, Any]:
        """The changesets view, without those whose run belongs to a DAG the user may not read."""
        if state is not None and state not in EXTERNAL_STATES:
            raise HTTPException(400, f"state must be one of {', '.join(EXTERNAL_STATES)}, got {state!r}")
        if store is None:
            return {"changesets": [], **data.changesets_summary([]), "database": None}
        view = data.changesets_view(store, repository=repository or None, state=state, run_id=run_id or None)
        dag_ids = _dag_ids(sorted({c["run_id"] for c in view["changesets"] if c["run_id"]}))
        readable = {d for d in set(dag_ids.values()) if _can(user, "GET", d)}
        kept = [{**c, "dag_id": dag_ids.get(c["run_id"])} for c in view["changesets"]
                if dag_ids.get(c["run_id"]) is None or dag_ids[c["run_id"]] in readable]
        if len(kept) != len(view["changesets"]):
            view = {**view, **data.changesets_summary(kept)}
        view["changesets"] = kept
        view["database"] = store.description
        return view

    repository_q = Query(None, description="only the changesets of this repository (owner/name)")
    run_q = Query(None, description="only the changesets the run last published")

    @app.get("/api/changesets")
    def changesets(user: Any = Depends(dag_reader), repository: str | None = repository_q,
                   state: str | None = Query(None, description="only changesets in this external state: "
                                             + ", ".join(EXTERNAL_STATES)),
                   run_id: str | None = run_q) -> Response:
        """The pull/merge requests runs published: states, link, failures, the cost of the run that published."""
        return _json(readable_changesets(user, _store(), repository, state, run_id))

    @app.get("/api/changesets/burndown")
    def changesets_burndown(user: Any = Depends(dag_reader), repository: str | None = repository_q,
                            run_id: str | None = run_q,
                            days: int = Query(data.BURNDOWN_MAX_DAYS, ge=1, le=data.BURNDOWN_MAX_DAYS,
                                              description="the last days shown, today included")) -> Response:
        """Per UTC day, how many changesets were draft, open, merged and closed at its end (see data.burndown)."""
        store = _store()
        view = readable_changesets(user, store, repository, None, run_id)
        out = data.burndown(view["changesets"], max_days=days)
        out["database"] = view["database"]
        return _json(out)

    @app.post("/api/run/reset-stale")
    def reset_stale(request: Request, run_id: str, user: Any = Depends(dag_reader),
                    stale_after: float | None = stale_q) -> Response:
        """Put the run's stale shards back to pending (their task instances' retries pick them up)."""
        if request.headers.get("x-worktree-action") != "reset-stale":  # a cross-site form cannot set it
            raise HTTPException(400, "send the header X-Worktree-Action: reset-stale")
        if not _allow_reset():
            raise HTTPException(403, "Forbidden: the dashboard is read-only; set [worktree] ui_allow_reset = True "
                                "to allow resetting stale shards")
        dag_id = _dag_ids([run_id]).get(run_id)
        if not _can(user, "PUT", dag_id, clear=True):
            raise HTTPException(403, "Forbidden: resetting stale shards needs the permission to clear task "
                                f"instances of DAG {dag_id or '(any)'}")
        hook = _hook()
        if hook is None:
            raise HTTPException(404, "no shard database yet")
        rows = hook.cleanup_stale(_stale_after(stale_after), run_id)
        return _json({"run_id": run_id, "reset": [r["shard_id"] for r in rows]})

    return app
