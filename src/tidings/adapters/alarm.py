"""The alarm clock: APScheduler 3.x wakes the engine when something is due. Not the ledger.

What is due lives in our tables (waiting runs' `due_at`, outbox messages' next attempt). The
scheduler holds ONE date job, `wake`, armed at the earliest of those times and re-armed after
every engine pass; when it fires, the daemon processes whatever the tables say is due, then arms
for the next. Nothing is lost if the process dies: at start the daemon processes what is already
due and arms again from the tables.

The job names a module-level function and carries no state (no run ids, no objects): `ring`
does nothing itself; a scheduler listener owned by `ApschedulerAlarm` turns "the job ran" into
a call to `on_wake`. A late wake is never dropped: `misfire_grace_time=None` runs a job however
late it is (APScheduler's default grace of 1 s would silently skip it), and `coalesce=True`
makes several missed runs one. How late timers are treated is the engine's `late` policy.

Times given to `wake_at` are in the engine's clock; they are turned into a delay from that
clock's `now`, so a test clock that is far from the wall clock still gets woken after the
right delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from tidings.adapters.clock import SystemClock, as_utc
from tidings.ports import Clock

log = logging.getLogger(__name__)

JOB_ID = "wake"
RING = "tidings.adapters.alarm:ring"  # by reference: the job holds a name, not an object


async def ring() -> None:
    """The wake job's function: nothing to do here, the alarm's listener wakes the engine."""


class ApschedulerAlarm:
    """The `Alarm` port on an `AsyncIOScheduler` in the daemon's event loop."""

    def __init__(
        self,
        on_wake: Callable[[], None],
        clock: Clock,
        *,
        wall_clock: Clock | None = None,
    ) -> None:
        self._on_wake = on_wake
        self._clock = clock
        self._wall = wall_clock or SystemClock()
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_listener(
            self._job_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, *, paused: bool = False) -> None:
        """Start the scheduler in the running event loop (paused: arm but never fire)."""
        self._loop = asyncio.get_running_loop()
        self._scheduler.start(paused=paused)

    async def shutdown(self) -> None:
        """Stop the scheduler; a pending wake is simply forgotten (the tables remember)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            # AsyncIOScheduler stops on the loop's next turn: let it, before the loop closes.
            await asyncio.sleep(0)

    @property
    def running(self) -> bool:
        """Whether the scheduler runs (armed alarms can ring)."""
        return bool(self._scheduler.running)

    def wake_at(self, when: datetime) -> None:
        """Make sure the engine is woken no later than `when` (an earlier alarm stays)."""
        if not self._scheduler.running:
            return  # stopping: the tables still know what is due, the next start re-arms
        run_date = self._wall.now() + (as_utc(when) - self._clock.now())
        armed = self.armed_at()
        if armed is not None and armed <= run_date:
            return
        self._scheduler.add_job(
            RING,
            trigger="date",
            run_date=run_date,
            id=JOB_ID,
            name="wake the engine",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
        )
        log.debug("alarm armed", extra={"due_at": as_utc(when).isoformat()})

    def jobs(self) -> list[Job]:
        """The scheduler's jobs (at most the one `wake` job)."""
        return list(self._scheduler.get_jobs())

    def armed_at(self) -> datetime | None:
        """When the pending wake fires, in wall-clock time (None: nothing armed)."""
        job = self._scheduler.get_job(JOB_ID)
        when: datetime | None = getattr(job, "next_run_time", None) if job else None
        return as_utc(when) if when is not None else None

    def armed_delay(self) -> timedelta | None:
        """How long until the pending wake fires, from the wall clock's now."""
        armed = self.armed_at()
        return None if armed is None else armed - self._wall.now()

    def _job_done(self, event: JobExecutionEvent) -> None:
        if event.job_id != JOB_ID:
            return
        if event.exception is not None:
            log.error("alarm job failed: %s", event.exception)
        loop = self._loop
        # Listeners may run on an executor thread: hand the wake to the event loop's thread.
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_wake)
