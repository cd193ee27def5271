"""Timers: many runs waiting on SQLite, and a crowd of them falling due at the same instant.

    .venv/bin/python -m bench.timers            # 100,000 waiting, 5,000 due at once, 3 runs
    .venv/bin/python -m bench.timers --full     # 1,000,000 waiting, 100,000 due at once, 1 run

Each run builds a fresh database: one real run is made by the engine (workflow
`timer_bench`: `wait: 1h`, then `send_email`), for one contact; then its contact, identifier
and run rows are cloned in SQL into N contacts (`b1` .. `bN`, email `bN@bench.example`) each
with one waiting run (`run-b1` ..). The first D runs are due at one instant T (the same for
all, about `--lead` seconds after the daemon is started); the others in 30 days.

Then the daemon (`tidings run`, system clock) is started on that database. Measured:
- database size (file + WAL) before the start;
- start-to-ready: from starting the process until `/ready` answers 200;
- resident memory once ready (idle, N runs waiting) and at its peak over the whole run;
- steps/s: D / (when the last of the D messages was recorded - T), from the outbox rows'
  `created_at`, the engine's own clock;
- lateness of each due run: its message's `created_at` - T (p50, p90, p99, max).
The workflow's quiet hours cover the benchmark's time of day, so each message is recorded in
the outbox deferred (not_before = end of the quiet hours) and the delivery loop stays idle: the
figure is the engine's, bench.delivery measures delivery.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    Sampler,
    count_rows,
    daemon_env,
    free_port,
    header,
    load_line,
    median,
    mib,
    percentile,
    spread,
    start_daemon,
    table,
    wait_for,
)

WORKFLOW = """\
id: timer_bench
name: Timer benchmark
trigger:
  event: bench_started
quiet_hours: {{start: "{start}", end: "{end}"}}
steps:
  - wait: 1h
  - send_email: {{template: timer_bench}}
"""
TEMPLATE = """---
subject: "{{ contact.FIRSTNAME }}, a reminder"
---
<p>Hello {{ contact.FIRSTNAME }}, this is the reminder you were waiting for.</p>
"""
SQL_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how the store keeps a UTC time in SQLite


@dataclass
class Result:
    """One run."""

    waiting: int
    due: int
    db_bytes: int
    seed_s: float
    ready_s: float
    idle_rss: int
    peak_rss: int
    steps_per_s: float
    lateness_s: list[float]


def write_definitions(folder: Path, now: datetime) -> None:
    """The workflow (quiet hours around now, UTC) and its template."""
    (folder / "workflows").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    start = (now - timedelta(minutes=5)).strftime("%H:%M")
    end = (now + timedelta(hours=3)).strftime("%H:%M")
    (folder / "workflows" / "timer_bench.yaml").write_text(WORKFLOW.format(start=start, end=end))
    (folder / "templates" / "timer_bench.email.html").write_text(TEMPLATE)


def seed_one(folder: Path, now: datetime) -> None:
    """One genuine waiting run, made by the engine from one event."""
    from tidings.adapters.clock import ManualClock
    from tidings.adapters.sql.store import SqlStore
    from tidings.engine.core import Environment
    from tidings.service.ingest import IngestService
    from tidings.service.processing import Processor
    from tidings.service.registry import WorkflowRegistry
    from tidings.service.shapes import brevo_event
    from tidings.service.validation import Limits

    registry, loaded = WorkflowRegistry.from_directory(folder / "workflows", folder / "templates")
    if loaded.problems:
        raise SystemExit(f"benchmark workflow does not load: {loaded.problems}")
    store = SqlStore(f"sqlite:///{folder / 'tidings.db'}")
    try:
        store.migrate()
        registry.record_versions(store)
        clock = ManualClock(now)
        body = {
            "event_name": "bench_started",
            "identifiers": {"email_id": "seed@bench.example"},
            "contact_properties": {"FIRSTNAME": "Ann"},
            "event_properties": {"n": 0},
        }
        ingest = IngestService(store, clock)
        event = brevo_event(body, now=now, limits=Limits())
        ingest.ingest_now(
            ingest.submission([event], key_id="bench", body=b"", idempotency_key="seed")
        )
        env = Environment(
            templates=registry.catalog, mail_from="Bench <bench@bench.example>", sms_sender="Bench"
        )
        Processor(store, registry, env, clock).run_until_idle()
    finally:
        store.close()


def clone(
    conn: sqlite3.Connection, table_name: str, where: str, replace: dict[str, str], count: int
) -> None:
    """INSERT count copies of the row matching `where`, columns in `replace` rewritten (SQL
    expressions over n = 1 .. count)."""
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table_name})")]
    select = ", ".join(replace.get(c, f"t.{c}") for c in columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    conn.execute(
        f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count:d})"
        f' INSERT INTO "{table_name}" ({quoted}) SELECT {select} FROM seq, "{table_name}" t WHERE {where}'
    )


def marker(now: datetime) -> str:
    """The due time the crowd is seeded with, until `arm` sets the real one."""
    return (now + timedelta(days=31)).astimezone(UTC).strftime(SQL_TIME)


def seed(folder: Path, waiting: int, due: int, now: datetime) -> None:
    """The database: `waiting` runs; the first `due` of them carry `marker(now)` for `arm`."""
    seed_one(folder, now)
    far = (now + timedelta(days=30)).astimezone(UTC).strftime(SQL_TIME)
    at = marker(now)
    conn = sqlite3.connect(folder / "tidings.db", isolation_level=None)
    try:
        (seed_id,) = conn.execute("SELECT contact_id FROM runs").fetchone()
        conn.execute("BEGIN")
        clone(conn, "contacts", f"t.id = '{seed_id}'", {"id": "'b' || n"}, waiting)
        clone(
            conn,
            "contact_identifiers",
            f"t.contact_id = '{seed_id}'",
            {"value": "'b' || n || '@bench.example'", "contact_id": "'b' || n"},
            waiting,
        )
        clone(
            conn,
            "runs",
            f"t.contact_id = '{seed_id}'",
            {
                "id": "'run-b' || n",
                "contact_id": "'b' || n",
                "due_at": f"CASE WHEN n <= {due:d} THEN '{at}' ELSE '{far}' END",
            },
            waiting,
        )
        conn.execute(f"UPDATE runs SET due_at = '{far}' WHERE contact_id = '{seed_id}'")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def arm(folder: Path, now: datetime, due_at: datetime) -> None:
    """Make the crowd due at `due_at` (just before the daemon starts)."""
    conn = sqlite3.connect(folder / "tidings.db", isolation_level=None)
    try:
        at = due_at.astimezone(UTC).strftime(SQL_TIME)
        conn.execute("UPDATE runs SET due_at = ? WHERE due_at = ?", (at, marker(now)))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def db_bytes(folder: Path) -> int:
    """The database file and its WAL."""
    return sum(p.stat().st_size for p in folder.glob("tidings.db*") if p.is_file())


def one_run(waiting: int, due: int, lead_s: float) -> Result:
    """Seed, start the daemon, let the crowd fall due, measure."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-timers-") as name:
        folder = Path(name)
        now = datetime.now(UTC)
        write_definitions(folder, now)
        started = time.perf_counter()
        seed(folder, waiting, due, now)
        seed_s = time.perf_counter() - started
        size = db_bytes(folder)
        # The lead covers the daemon's start: the crowd must fall due once it is ready.
        due_at = datetime.now(UTC) + timedelta(seconds=lead_s)
        arm(folder, now, due_at)
        db = folder / "tidings.db"
        server = start_daemon(folder, free_port(), daemon_env(folder, TIDINGS_LOG_LEVEL="WARNING"))
        try:
            idle_rss = server.usage().rss_bytes
            if datetime.now(UTC) >= due_at:
                print(
                    f"   note: ready {(datetime.now(UTC) - due_at).total_seconds():.1f} s after the due instant; raise --lead"
                )
            with Sampler(server.proc.pid) as sampler:
                wait_for(
                    lambda: count_rows(db, "SELECT count(*) FROM messages") >= due,
                    f"{due} messages in the outbox",
                    timeout=max(600.0, due / 20),
                )
            peak = max(sampler.peak_rss, server.usage().peak_rss_bytes)
        finally:
            server.stop()
        with contextlib.closing(sqlite3.connect(db)) as conn:
            created = [
                datetime.strptime(row[0], SQL_TIME).replace(tzinfo=UTC)
                for row in conn.execute(
                    "SELECT created_at FROM messages WHERE run_id LIKE 'run-b%'"
                )
            ]
    lateness = sorted((c - due_at).total_seconds() for c in created)
    last = lateness[-1] if lateness else float("nan")
    return Result(
        waiting=waiting,
        due=len(created),
        db_bytes=size,
        seed_s=seed_s,
        ready_s=server.ready_s,
        idle_rss=idle_rss,
        peak_rss=peak,
        steps_per_s=len(created) / last if last > 0 else float("nan"),
        lateness_s=lateness,
    )


def in_process(waiting: int, due: int) -> tuple[float, float]:
    """The engine's timer path alone, without the daemon: `Processor.run_until_idle` over a
    database seeded as above with the crowd due; (steps/s, CPU microseconds per step)."""
    from tidings.adapters.clock import ManualClock
    from tidings.adapters.sql.store import SqlStore
    from tidings.engine.core import Environment
    from tidings.service.processing import Processor
    from tidings.service.registry import WorkflowRegistry

    with tempfile.TemporaryDirectory(prefix="tidings-bench-timers-") as name:
        folder = Path(name)
        now = datetime.now(UTC)
        write_definitions(folder, now)
        seed(folder, waiting, due, now)
        due_at = now + timedelta(minutes=1)
        arm(folder, now, due_at)
        registry, _ = WorkflowRegistry.from_directory(folder / "workflows", folder / "templates")
        store = SqlStore(f"sqlite:///{folder / 'tidings.db'}")
        env = Environment(
            templates=registry.catalog, mail_from="Bench <bench@bench.example>", sms_sender="Bench"
        )
        try:
            processor = Processor(store, registry, env, ManualClock(due_at))
            wall, cpu = time.perf_counter(), time.process_time()
            stats = processor.run_until_idle()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            store.close()
    return stats.timers / wall, 1e6 * cpu / max(stats.timers, 1)


def main() -> None:
    """`runs` runs; print each and the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="1,000,000 waiting, 100,000 due, 1 run")
    parser.add_argument("--waiting", type=int)
    parser.add_argument("--due", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument(
        "--lead",
        type=float,
        default=10.0,
        help="seconds from the daemon's start to the due instant",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="the engine's timer path alone, no daemon"
    )
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="with --in-process: Python's collector settings, not the daemon's",
    )
    args = parser.parse_args()
    waiting = args.waiting or (1_000_000 if args.full else 100_000)
    due = args.due or (100_000 if args.full else 5_000)
    runs = args.runs or (1 if args.full else 3)
    if args.in_process:
        if not args.default_gc:
            from tidings.cli.main import settle_gc

            # As `tidings run` starts: under Python's defaults the collector took about 25 us
            # of a step, against about 6 us in the daemon the figure stands for.
            settle_gc()
        header("timers, in process: Processor.run_until_idle over a crowd of due runs, SQLite")
        print(load_line())
        print(
            "collector: " + ("Python's defaults" if args.default_gc else "as the CLI (settle_gc)")
        )
        rates, cpus = [], []
        for n in range(runs):
            rate, cpu_us = in_process(waiting, due)
            rates.append(rate)
            cpus.append(cpu_us)
            print(
                f"   run {n + 1}: {due:,} due of {waiting:,} waiting: {rate:,.0f} steps/s, {cpu_us:,.0f} us CPU/step",
                flush=True,
            )
        print(f"\nsteps/s: {spread(rates)}; CPU per step: {spread(cpus, ' us')}")
        print(load_line())
        return
    header("timers: runs waiting on SQLite, a crowd due at one instant, the daemon (tidings run)")
    print(load_line())
    results = []
    for n in range(runs):
        r = one_run(waiting, due, args.lead)
        results.append(r)
        late = r.lateness_s
        print(
            f"   run {n + 1}: {r.waiting:,} waiting, database {mib(r.db_bytes)} (seeded in {r.seed_s:.1f} s);"
            f" start-to-ready {r.ready_s:.2f} s; RSS ready {mib(r.idle_rss)}, peak {mib(r.peak_rss)};"
            f" {r.due:,} due at once: {r.steps_per_s:,.0f} steps/s, lateness p50 {percentile(late, 50):.2f} s,"
            f" p90 {percentile(late, 90):.2f} s, p99 {percentile(late, 99):.2f} s, max {late[-1]:.2f} s",
            flush=True,
        )
    print()
    print(
        table(
            [
                ["figure", "median", "goal"],
                ["runs waiting", f"{waiting:,}", "1,000,000 (--full)"],
                ["database size", mib(median([r.db_bytes for r in results])), "-"],
                ["start-to-ready, s", spread([r.ready_s for r in results], fmt=",.2f"), "<= 5 s"],
                [
                    "resident memory once ready",
                    mib(median([r.idle_rss for r in results])),
                    "<= 300 MB",
                ],
                ["resident memory, peak", mib(median([r.peak_rss for r in results])), "<= 300 MB"],
                [
                    f"steps/s, {due:,} due at once",
                    spread([r.steps_per_s for r in results]),
                    ">= 10,000",
                ],
                [
                    "lateness p50, s",
                    f"{median([percentile(r.lateness_s, 50) for r in results]):.2f}",
                    "-",
                ],
                [
                    "lateness p99, s",
                    f"{median([percentile(r.lateness_s, 99) for r in results]):.2f}",
                    "-",
                ],
                ["lateness max, s", f"{median([r.lateness_s[-1] for r in results]):.2f}", "-"],
            ]
        )
    )
    print(load_line())


if __name__ == "__main__":
    main()
