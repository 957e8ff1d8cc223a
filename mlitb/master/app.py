"""The master's Starlette app: the HTTP API of architecture.md, `/ws`, health, metrics, the UI.

Handlers are thin: they validate (project.py), act through the registry and
answer JSON. Every error is `{"error": ...}` with a status a client can act
on; validation errors also name the `field`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from mlitb import __version__
from mlitb.closure import Closure, ClosureError, load_closure
from mlitb.data.catalog import get_manifest
from mlitb.http_api import ERROR_HANDLERS, require_admin
from mlitb.master import allocation as alloc
from mlitb.master import latency, predict_api, prometheus
from mlitb.master.checkpoint import Checkpoint
from mlitb.master.closure_io import (
    project_by_transfer,
    project_closure,
    project_from_closure,
)
from mlitb.master.closure_page import closure_page_policy, render_closure_page
from mlitb.master.closure_verify import verify_with_server
from mlitb.master.cluster import Cluster, ClusterLobby
from mlitb.master.connection import ConnectionStats, serve_connection
from mlitb.master.datawatch import watch_datasets
from mlitb.master.definition import (
    ValidationError,
    check_layers,
    check_layers_body,
    parse_create,
    parse_patch,
)
from mlitb.master.forward import OwnedElsewhere, forward
from mlitb.master.hardening import check_project_cap, master_middleware, model_limits
from mlitb.master.registry import Registry
from mlitb.master.runtime import ProjectRuntime
from mlitb.master.settings import Settings
from mlitb.master.trust import check_probability
from mlitb.store import Store
from mlitb.tasks import log_crash
from mlitb.validate import FieldError

log = logging.getLogger("mlitb.master")


def registry_of(request: Request) -> Registry:
    return request.app.state.registry


def settings_of(request: Request) -> Settings:
    return request.app.state.registry.settings


def admin(request: Request) -> None:
    require_admin(request, settings_of(request).admin_token)


def project_of(request: Request) -> ProjectRuntime:
    rt = registry_of(request).projects.get(request.path_params["id"])
    if rt is None:
        send_to_owner(request)
        raise HTTPException(404, f"no project {request.path_params['id']!r}; GET /api/projects lists them")
    return rt


def iteration_range(settings: Settings) -> tuple[int, int]:
    return settings.min_iteration_ms, settings.max_iteration_ms


# ------------------------------------------------------------ endpoints


async def config(request: Request) -> Response:
    default = registry_of(request).default_project()
    return JSONResponse({"version": __version__, "data_url": settings_of(request).data_url,
                         "default_project": default.id if default else None})


async def layers_check(request: Request) -> Response:
    raw = await request.body()  # at most max_body_bytes (hardening.py); parsed off the event loop
    net = await asyncio.to_thread(check_layers_body, raw, model_limits(settings_of(request)))
    layers = [{"type": layer.type, "out_sx": layer.out_shape[1], "out_sy": layer.out_shape[0],
               "out_depth": layer.out_shape[2]} for layer in net.layers]
    return JSONResponse({"param_count": net.param_count, "layers": layers})


async def list_projects(request: Request) -> Response:
    local = [project_json(rt, detail=False) for rt in registry_of(request).projects.values()]
    cluster = request.app.state.cluster
    if cluster is not None:  # every master lists every project: the others' as Redis holds them
        local += [cluster_project_json(cluster, pid) for pid in sorted(cluster.known)
                  if pid not in registry_of(request).projects]
    return JSONResponse(local)


async def list_masters(request: Request) -> Response:
    """The live masters with their public URLs and owned projects (just this one without a cluster)."""
    cluster = request.app.state.cluster
    if cluster is None:
        return JSONResponse([{"id": "local", "url": None, "projects": sorted(registry_of(request).projects)}])
    return JSONResponse(cluster.masters_json())


async def create_project(request: Request) -> Response:
    admin(request)
    registry, settings = registry_of(request), settings_of(request)
    check_project_cap(len(registry.projects), settings)
    body = await json_body(request)
    dataset = body.get("dataset") if isinstance(body, dict) else None
    manifest = await get_manifest(registry.store, dataset) if isinstance(dataset, str) and dataset else None
    if isinstance(body, dict) and "from" in body:  # transfer learning: layers and parameters from a closure
        closure = await source_closure(registry, body["from"])
        definition, checkpoint = project_by_transfer(body, closure, manifest, iteration_range(settings),
                                                     settings.eval_every)
        rt = await registry.create(definition, checkpoint)
        return JSONResponse(project_json(rt, detail=True), status_code=201)
    definition, _net = parse_create(
        body, dataset_shape=tuple(manifest.shape) if manifest else None,
        num_classes=len(manifest.classes) if manifest else None,
        default_eval_every=settings.eval_every, iteration_range=iteration_range(settings),
        model_limits=model_limits(settings))
    await claim_new(request, definition.id)
    rt = await registry.create(definition)
    fence_new(request, rt)
    return JSONResponse(project_json(rt, detail=True), status_code=201)


async def closure_text(registry: Registry, rt: ProjectRuntime) -> tuple[Checkpoint, str]:
    """A project's closure now, with test figures of the very parameters it holds (evaluated if needed)."""
    snapshot = rt.snapshot()
    await registry.evaluate_snapshot(rt, snapshot)
    text = await asyncio.to_thread(project_closure, rt.definition, rt.net, rt.manifest, snapshot,
                                   registry.settings.eval_max_examples)
    return snapshot, text


async def source_closure(registry: Registry, source: Any) -> Closure:
    """The closure a transfer starts from: given inline (JSON object), or a hosted project's, by id."""
    if isinstance(source, str):
        rt = registry.projects.get(source)
        if rt is None:
            raise ValidationError("from", f"no project {source!r} on this master to take the closure of "
                                          "(GET /api/projects lists them); or give the closure itself")
        _snapshot, text = await closure_text(registry, rt)
        return await asyncio.to_thread(load_closure, text)
    if not isinstance(source, dict):
        raise ValidationError("from", "must be a research closure (a JSON object) or the id of a project")
    try:
        return await asyncio.to_thread(load_closure, source)
    except ClosureError as exc:
        raise ValidationError(f"from.{exc.path}", exc.message, text=f"closure in 'from': {exc}") from exc


async def create_from_closure(request: Request) -> Response:
    admin(request)
    registry, settings = registry_of(request), settings_of(request)
    check_project_cap(len(registry.projects), settings)
    body = await request.body()
    try:
        closure = await asyncio.to_thread(load_closure, body)
    except ClosureError as exc:
        raise ValidationError(exc.path, exc.message, text=f"closure {exc}") from exc
    check_layers(closure.layers, model_limits(settings))  # the closure's model must fit this master's limits too
    manifest = await get_manifest(registry.store, closure.dataset.id) if closure.dataset.id else None
    definition, checkpoint = project_from_closure(closure, manifest, iteration_range(settings), settings.eval_every,
                                                  ignore_fingerprint=flag(request, "ignore_fingerprint"))
    await claim_new(request, definition.id)
    rt = await registry.create(definition, checkpoint)
    fence_new(request, rt)
    return JSONResponse(project_json(rt, detail=True), status_code=201)


async def get_project(request: Request) -> Response:
    return JSONResponse(project_json(project_of(request), detail=True))


async def patch_project(request: Request) -> Response:
    admin(request)
    rt = project_of(request)
    definition = parse_patch(await json_body(request), rt.definition, iteration_range(settings_of(request)))
    await registry_of(request).update(rt, definition)
    return JSONResponse(project_json(rt, detail=True))


async def delete_project(request: Request) -> Response:
    admin(request)
    rt = project_of(request)
    await registry_of(request).delete(rt)
    if request.app.state.cluster is not None:
        await request.app.state.cluster.forget(rt.id)
    return Response(status_code=204)


async def start_project(request: Request) -> Response:
    admin(request)
    rt = project_of(request)
    await registry_of(request).start(rt)
    return JSONResponse(project_json(rt, detail=True))


async def pause_project(request: Request) -> Response:
    admin(request)
    rt = project_of(request)
    await registry_of(request).pause(rt)
    return JSONResponse(project_json(rt, detail=True))


async def ban_worker(request: Request) -> Response:
    """The researcher bans a client (closed with `untrusted`, its id refused) or lifts the ban."""
    admin(request)
    rt = project_of(request)
    worker_id = request.path_params["worker"]
    if request.url.path.endswith("/unban"):
        rt.unban(worker_id)
        return JSONResponse({"worker": worker_id, "banned": False})
    if worker_id not in rt.workers and worker_id not in rt.banned:
        raise HTTPException(404, f"no worker {worker_id!r} in project {rt.id!r}; GET /api/projects/{rt.id} lists them")
    rt.ban(worker_id)
    return JSONResponse({"worker": worker_id, "banned": True})


async def conformance(request: Request) -> Response:
    """Recompute the next results of a worker (or of any trainer) with the numpy engine and report each
    verdict: what a worker author runs (`mlitb conformance`) to see that their worker computes what ours do."""
    admin(request)
    rt = project_of(request)
    query = request.query_params
    try:
        results = int(query.get("results", "3"))
        timeout_s = float(query.get("timeout_s", "120"))
    except ValueError:
        raise ValidationError("results", "results and timeout_s must be numbers") from None
    if not 1 <= results <= 20 or not 1 <= timeout_s <= 600:
        raise ValidationError("results", "results must be 1..20 and timeout_s 1..600")
    try:
        asked = rt.ask_conformance(query.get("worker"), results)
    except LookupError as exc:
        raise HTTPException(404, f"{exc}; GET /api/projects/{rt.id} lists the workers") from None
    try:
        async with asyncio.timeout(timeout_s):
            await asked.done.wait()
    except TimeoutError:
        pass
    finally:
        rt.forget_conformance(asked)
    complete = len(asked.verdicts) >= results
    body = {"project": rt.id, "worker": asked.worker_id, "wanted": results, "checks": asked.verdicts,
            "complete": complete, "passed": complete and all(v["passed"] for v in asked.verdicts)}
    return JSONResponse(body, status_code=200 if complete else 504)


async def project_credit(request: Request) -> Response:
    """Volunteer credit: the top contributors, and one volunteer's totals with `?volunteer=ID` (public)."""
    rt = project_of(request)
    try:
        top = int(request.query_params.get("top", "20"))
    except ValueError:
        raise ValidationError("top", "must be an integer") from None
    body: dict[str, Any] = {"project": rt.id, "volunteers": len(rt.credit.by_volunteer),
                            "top": rt.credit.top(max(0, min(top, 1000)))}
    if "volunteer" in request.query_params:
        body["volunteer"] = rt.credit.of(request.query_params["volunteer"][:64])
    return JSONResponse(body)


async def project_metrics(request: Request) -> Response:
    rt = project_of(request)
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        raise ValidationError("since", "must be an integer iteration") from None
    return JSONResponse([clean(m) for m in rt.metrics if m["iteration"] >= since])


async def download_closure(request: Request) -> Response:
    rt = project_of(request)
    snapshot, text = await closure_text(registry_of(request), rt)
    filename = f"{rt.id}-iteration-{snapshot.iteration}.closure.json"
    return Response(text, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def verify_project_closure(request: Request) -> Response:
    """`mlitb verify` on the project's closure now, against the master's data server (admin: it fetches the
    whole dataset and runs a test evaluation)."""
    admin(request)
    rt = project_of(request)
    snapshot, text = await closure_text(registry_of(request), rt)
    closure = await asyncio.to_thread(load_closure, text)
    report = await asyncio.to_thread(verify_with_server, closure, settings_of(request).data_url)
    return JSONResponse({**report.to_json(), "iteration": snapshot.iteration, "text": report.text()})


async def closure_page(request: Request) -> Response:
    rt = project_of(request)
    _snapshot, text = await closure_text(registry_of(request), rt)
    page = await asyncio.to_thread(render_closure_page, text, settings_of(request).static_dir)
    return HTMLResponse(page, headers={"Content-Security-Policy": closure_page_policy(page)})


async def websocket(ws: WebSocket) -> None:
    registry = ws.app.state.registry
    cluster = ws.app.state.cluster
    lobby = ClusterLobby(registry, cluster) if cluster is not None else registry
    await serve_connection(ws, lobby, registry.settings, ws.app.state.stats)


async def healthz(request: Request) -> Response:
    registry = registry_of(request)
    await registry.store.ping()
    return JSONResponse({"ok": True, "projects": len(registry.projects), "connections": request.app.state.stats.open})


async def metrics(request: Request) -> Response:
    return PlainTextResponse(prometheus.render(registry_of(request).projects.values(), request.app.state.stats),
                             media_type="text/plain; version=0.0.4")


ROUTES = [
    Route("/api/config", config, methods=["GET"]),
    Route("/api/masters", list_masters, methods=["GET"]),
    Route("/api/layers/check", layers_check, methods=["POST"]),
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects/from-closure", create_from_closure, methods=["POST"]),
    Route("/api/projects/{id}", get_project, methods=["GET"]),
    Route("/api/projects/{id}", patch_project, methods=["PATCH"]),
    Route("/api/projects/{id}", delete_project, methods=["DELETE"]),
    Route("/api/projects/{id}/start", start_project, methods=["POST"]),
    Route("/api/projects/{id}/pause", pause_project, methods=["POST"]),
    Route("/api/projects/{id}/metrics", project_metrics, methods=["GET"]),
    Route("/api/projects/{id}/workers/{worker}/ban", ban_worker, methods=["POST"]),
    Route("/api/projects/{id}/conformance", conformance, methods=["POST"]),
    Route("/api/projects/{id}/credit", project_credit, methods=["GET"]),
    Route("/api/projects/{id}/workers/{worker}/unban", ban_worker, methods=["POST"]),
    Route("/api/projects/{id}/closure", download_closure, methods=["GET"]),
    Route("/api/projects/{id}/closure.html", closure_page, methods=["GET"]),
    Route("/api/projects/{id}/verify", verify_project_closure, methods=["POST"]),
    Route("/api/projects/{id}/predict", predict_api.predict, methods=["POST"]),
    WebSocketRoute("/ws", websocket),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Projects load (running ones start) and the dataset watch begins; at shutdown, final checkpoints."""
    registry: Registry = app.state.registry
    cluster: Cluster | None = app.state.cluster
    if cluster is None:
        await registry.load()
    else:  # projects come as their leases are acquired (cluster.py)
        cluster.start(registry)
    watch = asyncio.create_task(watch_datasets(registry, registry.settings.dataset_poll_s), name="datawatch")
    watch.add_done_callback(log_crash(log))
    yield
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    if cluster is not None:
        await cluster.stop_scanning()
    await registry.close()
    if cluster is not None:  # after the final checkpoints: the leases go at once, others take over
        await cluster.close()


def create_master_app(settings: Settings, store: Store, cluster: Cluster | None = None) -> Starlette:
    """The master on `store`: the API routes, `/ws`, and the browser client at `/`.

    With a `cluster` (several masters on one Redis) it owns only the projects whose lease it holds
    and writes their state through the cluster's fenced store."""
    routes = list(ROUTES)
    if settings.static_dir.is_dir():
        routes.append(Mount("/", StaticFiles(directory=settings.static_dir, html=True), name="static"))
    app = Starlette(routes=routes, exception_handlers={FieldError: _field_error, OwnedElsewhere: forward, **ERROR_HANDLERS},
                    lifespan=lifespan,
                    middleware=master_middleware(settings, cluster.peer_origins() if cluster is not None else ()))
    app.state.registry = Registry(cluster.fenced if cluster is not None else store, settings)
    app.state.cluster = cluster
    app.state.stats = ConnectionStats()
    app.state.predict_limiter = predict_api.rate_limiter(settings)
    return app


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from exc


def flag(request: Request, name: str) -> bool:
    """A yes/no query parameter: 1/true/yes or 0/false/no (absent: no); anything else is a 400."""
    value = request.query_params.get(name, "0").lower()
    if value not in ("1", "true", "yes", "0", "false", "no", ""):
        raise ValidationError(name, f"must be 1 or 0, got {value!r}")
    return value in ("1", "true", "yes")


def project_json(rt: ProjectRuntime, detail: bool) -> dict[str, Any]:
    """A project as the API shows it; `detail` adds layers and the worker table."""
    d = rt.definition
    result: dict[str, Any] = {
        "id": d.id, "name": d.name, "description": d.description, "status": d.status, "iteration": rt.iteration,
        "steps": rt.steps, "dataset": d.dataset,
        "param_count": rt.param_count, "iteration_ms": d.iteration_ms, "optimizer": d.optimizer,
        "lr_multipliers": d.lr_multipliers or [1.0] * len(d.layers),
        "normalization": d.normalization, "eval_every": d.eval_every, "seed": d.seed, "created": d.created,
        "predict_access": d.predict_access, "predictors": rt.predictions.workers,
        "metrics": latest_metrics(rt), "trainers": len(rt.workers), "trackers": len(rt.trackers),
        "error": rt.error.to_json() if rt.error else None, "aggregation": d.aggregation,
        "links": d.link_settings.to_json(),
        "trust": {"results_refused": dict(rt.counters.dropped), "outliers": rt.counters.outliers,
                  "checks": {k: rt.counters.checks[k] for k in ("passed", "failed", "dropped")},
                  "banned": sorted(rt.banned)},
    }
    cluster = getattr(rt, "cluster", None)
    if cluster is not None:
        owner, epoch = cluster.owner_of(rt.id)
        result["owner"] = {"id": owner.id, "url": owner.url} if owner else None
        result["epoch"] = epoch
    if detail:
        result["layers"] = d.layers
        result["workers"] = [worker_json(rt, worker_id) for worker_id in rt.workers]
    return result


def worker_json(rt: ProjectRuntime, worker_id: str) -> dict[str, Any]:
    worker = rt.workers[worker_id]
    trainer = rt.allocation.trainers.get(worker_id)
    rate = latency.examples_per_s(worker.timing)
    return {
        "id": worker_id, "kind": worker.info.kind, "engine": worker.info.engine, "cores": worker.info.cores,
        "role": "trainer", "latency_ms": worker.timing.latency_ms, "budget_ms": worker.budget_ms,
        "shards_allocated": len(trainer.allocated) if trainer else 0,
        "shards_cached": len(alloc.work_shards(rt.allocation, worker_id)) if trainer else 0,
        "examples_per_s": rate, "accepted": worker.accepted, "dropped": worker.dropped, "state": worker.state,
        "codecs": {"result": worker.codecs.result, "params": worker.codecs.params,
                   "local_steps": worker.codecs.local_steps},
        "trust": {**worker.trust.summary(), "check_probability": check_probability(worker.trust, rt.trust_settings)},
    }


def latest_metrics(rt: ProjectRuntime) -> dict[str, Any] | None:
    """The last iteration's record, with the latest test figures (evaluation runs every N iterations)."""
    if not rt.metrics:
        return None
    latest = dict(rt.metrics[-1])
    for record in reversed(rt.metrics):
        if record.get("test_accuracy") is not None:
            latest["test_loss"], latest["test_accuracy"] = record["test_loss"], record["test_accuracy"]
            latest["test_iteration"] = record["iteration"]
            break
    return clean(latest)


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: non-finite numbers become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


async def _field_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FieldError)
    return JSONResponse(exc.to_json(), status_code=400)


# ------------------------------------------------------------ several masters (cluster.py)


def send_to_owner(request: Request) -> None:
    """On a master that does not own the project: the request goes to its owner (forward.py)."""
    cluster = request.app.state.cluster
    if cluster is None:
        return
    owner, _epoch = cluster.owner_of(request.path_params["id"])
    if owner is not None and owner.id != cluster.id:
        raise OwnedElsewhere(owner.url)
    if request.path_params["id"] in cluster.known:
        raise HTTPException(503, f"project {request.path_params['id']!r} is moving between masters; retry in a few "
                                 "seconds", headers={"Retry-After": "2"})


async def claim_new(request: Request, project_id: str) -> None:
    cluster = request.app.state.cluster
    if cluster is not None:
        await cluster.claim_new(project_id)


def fence_new(request: Request, rt: ProjectRuntime) -> None:
    cluster = request.app.state.cluster
    if cluster is not None:
        cluster.fence(rt)


def cluster_project_json(cluster: Cluster, project_id: str) -> dict[str, Any]:
    """A project another master owns, as Redis shows it (its definition; live figures are on the owner)."""
    d = cluster.known[project_id].definition
    owner, epoch = cluster.owner_of(project_id)
    return {"id": project_id, "name": d.get("name"), "description": d.get("description"), "status": d.get("status"),
            "dataset": d.get("dataset"), "created": d.get("created"),
            "owner": {"id": owner.id, "url": owner.url} if owner else None, "epoch": epoch}
