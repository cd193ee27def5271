"""The daemon (`tidings run`): HTTP API, engine, alarm and delivery in one asyncio process.

    HTTP (uvicorn) --ingested--> engine loop --messages queued--> delivery loop
                                     ^   alarm (APScheduler): earliest due run or message  ^
                                     +-------------------------------+----------------------+

- The engine loop runs `Processor.run_until_idle` in a worker thread whenever it is woken
  (events ingested, the alarm, SIGUSR1, or every POLL_INTERVAL as a safety net for events
  written by other processes), then arms the alarm for the earliest waiting run.
- The delivery loop runs `DeliveryWorker.drain` until nothing is due, when the engine queued
  messages or the alarm rings for a retry, then arms the alarm for the next message due
  (or lease to run out).
- At start the tables are the ledger: what is already due is processed at once, then the alarm
  is armed for what comes next. Nothing lives only in the scheduler.

Signals: SIGTERM/SIGINT stop gracefully (stop accepting requests and finish those in flight,
let the engine finish its pass, give in-flight deliveries `shutdown_grace_s`, after which their
lease returns them to the outbox; close the store). SIGHUP reloads workflows: bad files are
logged as errors and keep their last good version running, good ones replace theirs, and runs
in flight keep the version they started on unless the new version says `in_flight: cancel` or
`upgrade` (`service.in_flight`, applied after each reload to the versions that changed, and at
start).
SIGUSR1 makes the daemon look at what is due now.

Time control for tests (off by default): with `TIDINGS_CLOCK_FILE=/path` the daemon's clock is
the time written in that file (`FileClock`). A test rewrites the file, sends SIGUSR1 and waits
until `/metrics` shows `tidings_ticks_handled` reach its request count: by then the engine and
the delivery worker have both handled everything due at the file's time. Nothing sleeps
through a wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import uvicorn

from tidings.adapters.alarm import ApschedulerAlarm
from tidings.adapters.http.app import HttpDeps, HttpLimits, create_app
from tidings.adapters.http.consent import consent_router
from tidings.adapters.http.ops import OpsSources, ops_router
from tidings.bootstrap.components import Components
from tidings.compile.loader import CompiledWorkflow
from tidings.service.delivery import DeliveryWorker
from tidings.service.in_flight import apply_in_flight
from tidings.service.ingest import IngestService
from tidings.service.processing import Processor, ProcessStats
from tidings.service.registry import WorkflowRegistry
from tidings.service.validation import Limits

log = logging.getLogger("tidings.daemon")

POLL_INTERVAL = timedelta(seconds=10)  # safety net: events written by another process
RETRY_AFTER_FAILURE = timedelta(seconds=5)  # an engine pass that failed (e.g. database down)


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handlers: the daemon owns SIGTERM, SIGINT and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Signals are the daemon's, not uvicorn's."""
        yield


class Daemon:
    """One daemon process over already-built components."""

    def __init__(self, components: Components, *, host: str, port: int) -> None:
        self.c = components
        self.host = host
        self.port = port
        settings = components.settings
        self.processor = Processor(
            components.store,
            components.registry,
            components.env,
            components.clock,
            # Several daemons may share a PostgreSQL database; a SQLite file has this one.
            sole_claimer=components.sql.dialect == "sqlite",
        )
        self.delivery = DeliveryWorker(
            components.store,
            components.email,
            components.sms,
            components.clock,
            registry=components.registry,
            env=components.env,
            max_age=timedelta(seconds=settings.delivery_max_age_s),
        )
        self.ingest = IngestService(
            components.store,
            components.clock,
            limits=Limits(future_tolerance=timedelta(seconds=settings.event_date_tolerance_s)),
            duplicate_window=timedelta(seconds=settings.duplicate_window_s),
        )
        self.alarm = ApschedulerAlarm(self._alarm_rang, components.clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine_wake = asyncio.Event()
        self._delivery_wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._reload_requested = False
        # Versions whose `in_flight` policy is still to apply: at start every current one (a
        # file may have changed while the daemon was down), then those a reload changed. They
        # stay here until applied, so a pass that failed (database down) applies them later.
        self._in_flight_pending: list[CompiledWorkflow] = list(components.registry.current)
        self._ticks_requested = 0
        self._ticks_handled = 0
        self._delivery_tick = 0
        self._workflows_loaded: int | None = len(components.registry.current)
        self._workflow_problems = len(components.loaded.problems)
        self.server: _Server | None = None
        self.bound_port: int | None = None

    # ------------------------------------------------------------------ wiring

    def app_deps(self) -> HttpDeps:
        """What the HTTP routes run on."""
        settings = self.c.settings
        return HttpDeps(
            store=self.c.store,
            clock=self.c.clock,
            ingest=self.ingest,
            keys=self.c.keys,
            limits=HttpLimits(
                max_body_bytes=settings.max_body_bytes,
                max_batch_body_bytes=settings.max_batch_body_bytes,
                rate_limit_per_minute=settings.rate_limit_per_minute,
            ),
            on_ingested=self.wake_engine,
        )

    def ops_sources(self) -> OpsSources:
        """What `/health`, `/ready` and `/metrics` read."""
        return OpsSources(
            store=self.c.store,
            clock=self.c.clock,
            metrics=self.c.metrics,
            workflows_loaded=lambda: self._workflows_loaded,
            workflow_problems=lambda: self._workflow_problems,
            schema_at_head=self.c.schema_at_head,
            ticks_handled=lambda: self._ticks_handled,
        )

    # ------------------------------------------------------------------ requests

    def wake_engine(self) -> None:
        """Ask the engine loop for a pass (safe from any thread)."""
        if self._on_loop():
            self._engine_wake.set()  # after every request: no hop through the loop's self-pipe
        else:
            self._call_in_loop(self._engine_wake.set)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:  # a thread without a running loop
            return False

    def request_reload(self) -> None:
        """Reload workflows before the next engine pass (SIGHUP)."""
        self._reload_requested = True
        self.wake_engine()

    def request_tick(self) -> None:
        """Look at what is due now, engine then delivery (SIGUSR1)."""
        self._ticks_requested += 1
        self.wake_engine()

    def request_stop(self) -> None:
        """Begin a graceful stop (SIGTERM, SIGINT)."""
        self._call_in_loop(self._stop.set)

    def _call_in_loop(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)

    def _alarm_rang(self) -> None:
        self.c.metrics.inc("tidings_alarm_wakes_total")
        self._engine_wake.set()
        self._delivery_wake.set()

    # ------------------------------------------------------------------ life

    async def serve(self) -> int:
        """Run until asked to stop; returns the process exit code."""
        self._loop = asyncio.get_running_loop()
        sock = self._bind()
        self.bound_port = sock.getsockname()[1]
        self.c.links.bound_port = self.bound_port
        self._install_signals()
        # Runs started from now on can always find their version again, even after an edit.
        await asyncio.to_thread(self.c.registry.record_versions, self.c.store)
        app = create_app(
            self.app_deps(),
            extra_routers=[
                ops_router(self.ops_sources()),
                consent_router(self.c.tokens, self.c.store, self.c.clock),
            ],
        )
        config = uvicorn.Config(
            app, log_config=None, access_log=False, timeout_graceful_shutdown=10, lifespan="on"
        )
        self.server = _Server(config)
        self.alarm.start()
        engine = asyncio.create_task(self._engine_loop(), name="engine")
        delivery = asyncio.create_task(self._delivery_loop(), name="delivery")
        server = asyncio.create_task(self.server.serve(sockets=[sock]), name="http")
        # The tables are the ledger: whatever is already due is handled now.
        self._engine_wake.set()
        self._delivery_wake.set()
        log.info(
            "listening",
            extra={"url": f"http://{self.host}:{self.bound_port}", "port": self.bound_port},
        )
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({stop, server}, return_when=asyncio.FIRST_COMPLETED)
        code = 0 if stop in done else 1
        log.info("stopping")
        await self._shutdown(server, engine, delivery, stop)
        log.info("stopped", extra={"exit_code": code})
        return code

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named explicitly: asyncio only sets TCP_NODELAY on sockets that declare
        # it, and without that every response with a body waited ~40 ms on delayed ACKs.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        return sock

    def _install_signals(self) -> None:
        loop = self._loop
        assert loop is not None
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGUSR1, self.request_tick)

    async def _shutdown(self, *tasks: asyncio.Task[object]) -> None:
        server, engine, delivery, stop = tasks
        if self.server is not None:
            self.server.should_exit = True
        await asyncio.gather(server, return_exceptions=True)  # in-flight requests finish
        self._stopping = True
        self._engine_wake.set()
        self._delivery_wake.set()
        await asyncio.gather(engine, return_exceptions=True)  # the current pass finishes
        grace = self.c.settings.shutdown_grace_s
        try:
            await asyncio.wait_for(asyncio.shield(delivery), timeout=grace)
        except TimeoutError:
            log.warning(
                "deliveries still in flight after the grace period: their lease returns them"
                " to the outbox",
                extra={"grace_s": grace},
            )
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
        stop.cancel()
        self.delivery.close()
        await self.alarm.shutdown()
        for sender in (self.c.email, self.c.sms):
            close = getattr(sender, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        self.c.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            if self._loop is not None:
                self._loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------ engine

    async def _engine_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._engine_wake.wait(), POLL_INTERVAL.total_seconds())
            self._engine_wake.clear()
            if self._stopping:
                break
            tick = self._ticks_requested
            try:
                stats, next_due = await asyncio.to_thread(self._engine_pass)
            except Exception:
                log.exception("engine pass failed; retrying shortly")
                self.alarm.wake_at(self.c.clock.now() + RETRY_AFTER_FAILURE)
                self._request_delivery(tick)
                continue
            self.c.metrics.inc("tidings_engine_passes_total")
            if stats.events or stats.timers or stats.messages:
                log.info(
                    "engine pass",
                    extra={
                        "events": stats.events,
                        "timers": stats.timers,
                        "messages": stats.messages,
                    },
                )
            if next_due is not None:
                self.alarm.wake_at(next_due)
            # Only messages the pass queued, or a tick, are news for the delivery loop.
            if stats.messages or tick > self._delivery_tick:
                self._request_delivery(tick)

    def _engine_pass(self) -> tuple[ProcessStats, datetime | None]:
        """One pass, in a worker thread: reload if asked, process until idle, find next due."""
        if self._reload_requested:
            self._reload_requested = False
            self.reload()
        if self._in_flight_pending:
            self._apply_in_flight()  # before any timer of a run on an older version fires
        stats = self.processor.run_until_idle()
        return stats, self._next_run_due()

    # Each loop arms the alarm for what it handles itself: the engine for waiting runs, the
    # delivery loop for messages (every message the engine queues is followed by a delivery
    # pass, which arms for it). Armed for the other's due times too, a loop whose work was
    # due now but not yet done (messages waiting for a send slot, timers for the engine's
    # thread) was woken again at once by the alarm, over and over, for empty passes.

    def _next_run_due(self) -> datetime | None:
        with self.c.store.transaction() as uow:
            return uow.next_due_at()

    def _next_message_due(self) -> datetime | None:
        with self.c.store.transaction() as uow:
            return uow.next_message_due_at()

    def reload(self) -> None:
        """Reload workflows and templates; bad files keep their last good version."""
        settings = self.c.settings
        fresh, outcome = WorkflowRegistry.from_directory(
            settings.workflows_dir, settings.templates_dir
        )
        bad_files = {problem.location.file for problem in outcome.problems}
        for problem in outcome.problems:
            log.error("workflow problem: %s", problem, extra={"file": problem.location.file})
        loaded_ids = {w.id for w in outcome.workflows}
        kept = [
            w
            for w in self.c.registry.current
            if str(w.source) in bad_files and w.id not in loaded_ids
        ]
        registry = self.c.registry
        before = {(w.id, w.version) for w in registry.current}
        registry.catalog = fresh.catalog
        registry.replace([*outcome.workflows, *kept])
        self.processor.env = replace(self.processor.env, templates=fresh.catalog)
        registry.record_versions(self.c.store)
        changed = [w for w in registry.current if (w.id, w.version) not in before]
        pending = {w.id for w in changed}
        self._in_flight_pending = [
            *(w for w in self._in_flight_pending if w.id not in pending),
            *changed,
        ]
        self._workflows_loaded = len(registry.current)
        self._workflow_problems = len(outcome.problems)
        log.info(
            "workflows reloaded",
            extra={
                "workflows": [f"{w.id}@{w.version}" for w in registry.current],
                "kept_last_good": [w.id for w in kept],
                "problems": len(outcome.problems),
            },
        )

    def _apply_in_flight(self) -> None:
        """Apply the `in_flight` policy of the newly current versions (logged when it acts)."""
        workflows = self._in_flight_pending
        settled = apply_in_flight(self.processor, workflows)
        self._in_flight_pending = []
        if settled:
            log.info(
                "runs in flight settled by a new workflow version (in_flight)",
                extra={"runs": settled, "workflows": [f"{w.id}@{w.version}" for w in workflows]},
            )

    # ------------------------------------------------------------------ delivery

    def _request_delivery(self, tick: int) -> None:
        self._delivery_tick = max(self._delivery_tick, tick)
        self._delivery_wake.set()

    async def _delivery_loop(self) -> None:
        while True:
            await self._delivery_wake.wait()
            self._delivery_wake.clear()
            tick = self._delivery_tick
            try:
                # Asked before each claim: once stopping, what is claimed finishes, no more.
                await self.delivery.drain(go_on=lambda: not self._stopping)
                next_due = await asyncio.to_thread(self._next_message_due)
                if next_due is not None and not self._stopping:
                    self.alarm.wake_at(next_due)
            except Exception:
                log.exception("delivery pass failed; retrying shortly")
                if not self._stopping:
                    self.alarm.wake_at(self.c.clock.now() + RETRY_AFTER_FAILURE)
            self._ticks_handled = max(self._ticks_handled, tick)
            if self._stopping:
                return


def run_daemon(components: Components, *, host: str, port: int) -> int:
    """Run the daemon until it is stopped; returns the exit code."""
    return asyncio.run(Daemon(components, host=host, port=port).serve())
