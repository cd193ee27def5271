"""Operations routes: liveness, readiness with reasons, and metrics in the Prometheus format."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from support.messages import make_message, make_sms
from support.records import T0, make_contact, make_event, make_run, make_trace
from tidings.adapters.clock import ManualClock
from tidings.adapters.http.ops import CONTENT_TYPE, OpsSources, ops_router
from tidings.adapters.memory import MemoryStore
from tidings.adapters.metrics import MeteredStore, Metrics
from tidings.errors import StoreError
from tidings.model.messages import MessageStatus
from tidings.model.runs import RunStatus
from tidings.model.trace import TraceKind
from tidings.ports import UnitOfWork


def call(app: FastAPI, path: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(send())


def make_app(**overrides: Any) -> tuple[FastAPI, OpsSources]:
    metrics = Metrics()
    fields: dict[str, Any] = {
        "store": MeteredStore(MemoryStore(), metrics),
        "clock": ManualClock(T0 + timedelta(hours=3)),
        "metrics": metrics,
        "workflows_loaded": lambda: 2,
    }
    fields.update(overrides)
    sources = OpsSources(**fields)
    app = FastAPI()
    app.include_router(ops_router(sources))
    return app, sources


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics body, by name and labels, read by Prometheus' own parser."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class BrokenStore:
    """A store whose database is gone."""

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        raise StoreError("sqlite:///gone.db: unable to open database file")
        yield  # pragma: no cover


def test_health_answers_while_the_process_serves() -> None:
    app, _ = make_app(store=BrokenStore())

    answer = call(app, "/health")

    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_ready_when_the_store_answers_workflows_are_loaded_and_the_schema_is_current() -> None:
    app, _ = make_app()

    answer = call(app, "/ready")

    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "checks": {"store": "ok", "workflows": "2 loaded", "migrations": "at head"},
    }


@pytest.mark.parametrize(
    ("overrides", "check", "detail"),
    [
        ({"store": BrokenStore()}, "store", "unreachable: StoreError: sqlite:///gone.db"),
        ({"workflows_loaded": lambda: None}, "workflows", "not loaded yet"),
        ({"schema_at_head": lambda: False}, "migrations", "behind: run tidings db upgrade"),
    ],
)
def test_not_ready_names_the_failing_check(
    overrides: dict[str, Callable[[], Any] | BrokenStore], check: str, detail: str
) -> None:
    app, _ = make_app(**overrides)

    answer = call(app, "/ready")

    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    assert answer.json()["checks"][check].startswith(detail)


def test_metrics_count_what_committed_and_read_gauges_from_the_store() -> None:
    app, sources = make_app()
    store = sources.store
    with store.transaction() as uow:
        uow.save_contact(make_contact(1))
        uow.add_event(make_event(1, contact_id="contact-1"))
        uow.add_event(make_event(2, contact_id="contact-1"))
        uow.mark_events_processed([1, 2])
        uow.save_runs(
            [
                make_run(1, due_at=T0 + timedelta(hours=2, minutes=55)),  # 5 minutes late
                make_run(2, position="2/on_timeout/0", due_at=T0 + timedelta(hours=5)),
                make_run(3, status=RunStatus.finished, due_at=None),
            ]
        )
        uow.add_trace(
            [
                make_trace(1, kind=TraceKind.run_started),
                make_trace(2, kind=TraceKind.run_started),
                make_trace(3, kind=TraceKind.exited, data={"outcome": "exited_goal"}),
                make_trace(4, kind=TraceKind.finished, data={"outcome": "finished"}),
                make_trace(5, kind=TraceKind.skip),
            ]
        )
        uow.add_messages([make_message(1), make_sms(2), make_message(3)])
    with store.transaction() as uow:
        uow.save_message(make_message(1, status=MessageStatus.sent))
        uow.save_message(make_sms(2, status=MessageStatus.failed, last_error="550 no"))
        uow.save_message(make_message(3, attempts=1, last_error="421 busy"))
    with pytest.raises(RuntimeError), store.transaction() as uow:  # rolled back: not counted
        uow.add_event(make_event(3, contact_id="contact-1"))
        raise RuntimeError("abort")

    answer = call(app, "/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    found = samples(answer.text)
    wf = ("workflow", "abandoned_cart")
    assert found[("tidings_events_ingested_total", ())] == 2
    assert found[("tidings_events_processed_total", ())] == 2
    assert found[("tidings_runs_started_total", (wf,))] == 2
    assert found[("tidings_runs_exited_total", (wf,))] == 1
    assert found[("tidings_runs_finished_total", (("outcome", "finished"), wf))] == 1
    assert found[("tidings_sends_skipped_total", (wf,))] == 1
    assert found[("tidings_messages_queued_total", ())] == 3
    assert found[("tidings_messages_sent_total", (("channel", "email"),))] == 1
    assert found[("tidings_messages_failed_total", (("channel", "sms"),))] == 1
    assert found[("tidings_messages_deferred_total", (("channel", "email"),))] == 1
    assert found[("tidings_runs_waiting", (("step", "1"), wf))] == 1
    assert found[("tidings_runs_waiting", (("step", "2/on_timeout/0"), wf))] == 1
    assert found[("tidings_runs", (("status", "finished"), wf))] == 1
    assert found[("tidings_runs", (("status", "waiting"), wf))] == 2
    assert found[("tidings_timer_lag_seconds", ())] == 300
    assert found[("tidings_workflows_loaded", ())] == 2


def test_metrics_on_an_empty_store_still_name_every_unlabelled_series() -> None:
    app, _ = make_app()

    found = samples(call(app, "/metrics").text)

    assert found[("tidings_events_ingested_total", ())] == 0
    assert found[("tidings_timer_lag_seconds", ())] == 0
    assert found[("tidings_engine_passes_total", ())] == 0
    assert not [name for name, _ in found if name.startswith("tidings_runs_waiting")]
