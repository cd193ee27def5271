"""The APScheduler alarm: one `wake` job, armed at the earliest due time, never dropped late."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tidings.adapters.alarm import JOB_ID, RING, ApschedulerAlarm
from tidings.adapters.clock import ManualClock

ENGINE_T0 = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)  # the engine's (test) time
WALL_T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # the wall clock APScheduler counts in


def make_alarm(wakes: list[str]) -> tuple[ApschedulerAlarm, ManualClock]:
    clock = ManualClock(ENGINE_T0)
    alarm = ApschedulerAlarm(lambda: wakes.append("wake"), clock, wall_clock=ManualClock(WALL_T0))
    return alarm, clock


def test_the_alarm_is_one_stateless_job_armed_at_the_earliest_time_asked() -> None:
    async def scenario() -> list[datetime | None]:
        alarm, _ = make_alarm([])
        alarm.start(paused=True)  # armed, never fired: only the arming is under test
        try:
            seen = [alarm.armed_at()]
            alarm.wake_at(ENGINE_T0 + timedelta(hours=2))
            seen.append(alarm.armed_at())
            alarm.wake_at(ENGINE_T0 + timedelta(hours=3))  # later: the earlier alarm stays
            seen.append(alarm.armed_at())
            alarm.wake_at(ENGINE_T0 + timedelta(minutes=5))  # earlier: re-armed
            seen.append(alarm.armed_at())
            jobs = alarm.jobs()
            assert [job.id for job in jobs] == [JOB_ID]
            [job] = jobs
            assert (job.func_ref, job.args, job.kwargs) == (RING, (), {})
            assert (job.misfire_grace_time, job.coalesce) == (None, True)
            return seen
        finally:
            await alarm.shutdown()

    seen = asyncio.run(scenario())

    # Engine times become delays from the engine clock, counted on the wall clock.
    assert seen == [
        None,
        WALL_T0 + timedelta(hours=2),
        WALL_T0 + timedelta(hours=2),
        WALL_T0 + timedelta(minutes=5),
    ]


def test_a_wake_already_late_still_rings_and_the_job_is_then_gone() -> None:
    async def scenario() -> tuple[list[str], datetime | None]:
        wakes: list[str] = []
        rang = asyncio.Event()

        def on_wake() -> None:
            wakes.append("wake")
            rang.set()

        alarm = ApschedulerAlarm(on_wake, ManualClock(ENGINE_T0))
        alarm.start()
        try:
            # Due an hour ago (say, while the daemon was down): APScheduler's default grace of
            # one second would skip it silently; ours runs it.
            alarm.wake_at(ENGINE_T0 - timedelta(hours=1))
            await asyncio.wait_for(rang.wait(), timeout=30)
            return wakes, alarm.armed_at()
        finally:
            await alarm.shutdown()

    wakes, armed = asyncio.run(scenario())

    assert wakes == ["wake"]
    assert armed is None  # a date job runs once; the daemon re-arms from the tables


def test_wake_at_takes_any_offset_and_shutdown_forgets_the_pending_wake() -> None:
    async def scenario() -> tuple[datetime | None, bool]:
        alarm, _ = make_alarm([])
        alarm.start(paused=True)
        paris = ENGINE_T0.astimezone(ZoneInfo("Europe/Paris"))
        alarm.wake_at(paris + timedelta(minutes=30))
        armed = alarm.armed_at()
        await alarm.shutdown()
        alarm.wake_at(paris + timedelta(minutes=1))  # ignored once stopped
        return armed, alarm.running

    armed, running = asyncio.run(scenario())

    assert armed == WALL_T0 + timedelta(minutes=30)
    assert running is False
