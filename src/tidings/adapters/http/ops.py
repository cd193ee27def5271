"""Operations routes: `/health` (liveness), `/ready` (readiness), `/metrics` (Prometheus text).

- `/health` answers 200 while the process serves HTTP at all.
- `/ready` answers 200 only when the store answers, the workflows have been loaded and the
  schema is at the newest migration; otherwise 503, naming each failing check. Load balancers
  and orchestrators send traffic (and restarts) by these two.
- `/metrics` is the text exposition format: the process's counters (`tidings.adapters.metrics`)
  and gauges read from the store when scraped: runs per workflow and status, runs waiting per
  workflow and step, and timer lag (how far the earliest waiting run is past its due time; it
  stays near 0 while the engine keeps up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

from tidings.adapters.metrics import Family, Labels, Metrics
from tidings.model.runs import RunStatus
from tidings.ports import Clock, Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RUNS = Family("tidings_runs", "gauge", "Runs per workflow and status (all time).", True)
WAITING = Family("tidings_runs_waiting", "gauge", "Runs waiting, per workflow and step.", True)
LAG = Family("tidings_timer_lag_seconds", "gauge", "How far the earliest waiting run is past due.")
WORKFLOWS = Family("tidings_workflows_loaded", "gauge", "Workflows currently loaded.")
PROBLEMS = Family("tidings_workflow_problems", "gauge", "Problems found at the last (re)load.")
TICKS = Family("tidings_ticks_handled", "gauge", "Wake requests fully handled (SIGUSR1).")


@dataclass
class OpsSources:
    """Where the ops routes read from; the daemon fills it in."""

    store: Store
    clock: Clock
    metrics: Metrics
    workflows_loaded: Callable[[], int | None]  # None until the first load finished
    workflow_problems: Callable[[], int] = lambda: 0
    schema_at_head: Callable[[], bool] = lambda: True
    ticks_handled: Callable[[], int] = lambda: 0


def ops_router(sources: OpsSources) -> APIRouter:
    """The `/health`, `/ready` and `/metrics` routes over `sources`."""
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        """200 while the process serves HTTP."""
        return {"status": "ok"}

    @router.get("/ready", summary="Readiness", responses={503: {"description": "Not ready"}})
    async def ready() -> JSONResponse:
        """200 when the store answers, workflows are loaded and the schema is current."""
        checks = await run_in_threadpool(readiness, sources)
        ok = all(passed for passed, _ in checks.values())
        body = {
            "status": "ready" if ok else "not ready",
            "checks": {name: detail for name, (_, detail) in checks.items()},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Counters and gauges in the Prometheus text format."""
        text = await run_in_threadpool(exposition, sources)
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    return router


def readiness(sources: OpsSources) -> dict[str, tuple[bool, str]]:
    """Each readiness check: (passed, what was found)."""
    checks: dict[str, tuple[bool, str]] = {}
    try:
        with sources.store.transaction() as uow:
            uow.next_due_at()
        checks["store"] = (True, "ok")
    except Exception as exc:  # any failure means "not ready", and says why
        checks["store"] = (False, f"unreachable: {type(exc).__name__}: {exc}")
    loaded = sources.workflows_loaded()
    checks["workflows"] = (
        (True, f"{loaded} loaded") if loaded is not None else (False, "not loaded yet")
    )
    try:
        at_head = sources.schema_at_head()
        checks["migrations"] = (at_head, "at head" if at_head else "behind: run tidings db upgrade")
    except Exception as exc:
        checks["migrations"] = (False, f"unknown: {type(exc).__name__}: {exc}")
    return checks


def exposition(sources: OpsSources) -> str:
    """The full `/metrics` text: counters, then gauges read from the store now."""
    runs: dict[Labels, float] = {}
    waiting: dict[Labels, float] = {}
    with sources.store.transaction() as uow:
        counts = uow.run_counts()
        next_due = uow.next_due_at()
    for count in counts:
        key = (("status", count.status), ("workflow", count.workflow_id))
        runs[key] = runs.get(key, 0) + count.count
        if count.status == RunStatus.waiting.value:
            step = (("step", count.position), ("workflow", count.workflow_id))
            waiting[step] = waiting.get(step, 0) + count.count
    lag = timedelta(0)
    if next_due is not None:
        lag = max(lag, sources.clock.now() - next_due)
    gauges: list[tuple[Family, dict[Labels, float]]] = [
        (RUNS, runs),
        (WAITING, waiting),
        (LAG, {(): lag.total_seconds()}),
        (WORKFLOWS, {(): float(sources.workflows_loaded() or 0)}),
        (PROBLEMS, {(): float(sources.workflow_problems())}),
        (TICKS, {(): float(sources.ticks_handled())}),
    ]
    return sources.metrics.exposition(gauges)
