"""Engine: events/s through the full engine and store (`simulate`'s replay in virtual time),
over the REES46 sample scaled up, beside the raw speed of plain sqlite3 inserts of the same rows.

    .venv/bin/python -m bench.engine            # the sample once (17,434 events), 3 runs
    .venv/bin/python -m bench.engine --full     # 58 clones (1,011,172 events), 1 run

Scaling (exactly): the sample (../shared/data/rees46_multicategory_2019-10-01_head.csv,
17,434 rows from 2019-10-01 00:00:00 to 02:50:00 UTC) is written K times into one CSV file.
Clone k (k = 0 .. K-1) is every row of the sample with
- `user_id` replaced by `user_id * 1000 + k` (user ids are below 10^9, so ids never collide
  across clones and a clone's users are as many and as active as the sample's),
- `user_session` replaced by `user_session + "-" + k` (zero-padded to 3 digits), so carts and
  orders (keyed by session in mappings/rees46.yaml) are the clone's own,
- `event_time` shifted by k x 3 hours, so the clones follow one another without overlapping
  (the sample spans 2 h 50 min): a 1,011,172-event log covering 7 days and 6 hours, in order.
Every other column is kept byte for byte. The file is written to a temporary folder, never
into the repository (the sample's licence is unknown).

Engine figure: `simulate` itself, in process (tidings.bootstrap.simulation): the events are
read through the mapping (mappings/rees46.yaml) and checked (timed apart as "read"), then
replayed through the example workflows (workflows/, templates/) with the real engine on a fresh
SQLite file: contacts resolved, events stored, runs started and advanced, timers fired in
virtual time, trace and outbox written, 2,000 events per transaction (`replay.CHUNK`), messages written as files,
the report built. events/s = events replayed / replay seconds. The process collects garbage as
`tidings simulate` does (`tidings.cli.main.settle_gc`: start-up heap frozen, the young
generation collected every 50,000 allocations); `--default-gc` keeps Python's defaults (700),
under which about a seventh of the replay's CPU is spent in the collector.

Raw figure, measured in the same run: the same rows (the scaled CSV's 9 columns, as text)
inserted with Python's sqlite3 `executemany`, as many rows per transaction as the replay's chunk,
WAL and synchronous=FULL as the store uses: rows/s.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import (
    REPO,
    SAMPLE,
    SAMPLE_SHOWN,
    header,
    load_line,
    median,
    spread,
    table,
)

SHIFT = timedelta(hours=3)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
FULL_CLONES = 58  # 58 x 17,434 = 1,011,172 events


def scaled_rows(sample: Path, clones: int) -> Iterator[list[str]]:
    """The sample's rows, cloned `clones` times by the scheme in the module docstring."""
    with sample.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = list(reader)
    for k in range(clones):
        shift = SHIFT * k
        for row in rows:
            when = datetime.strptime(row[0], TIME_FORMAT) + shift
            out = list(row)
            out[0] = when.strftime(TIME_FORMAT)
            out[7] = str(int(row[7]) * 1000 + k)
            out[8] = f"{row[8]}-{k:03d}"
            yield out


def write_scaled(sample: Path, clones: int, path: Path) -> int:
    """Write the scaled log as CSV (with the sample's header); returns its row count."""
    with sample.open(encoding="utf-8") as handle:
        head = handle.readline().rstrip("\n").split(",")
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(head)
        for row in scaled_rows(sample, clones):
            writer.writerow(row)
            count += 1
    return count


def raw_insert(path: Path, folder: Path) -> tuple[float, int]:
    """Rows/s of plain sqlite3 batched inserts of the file's rows (parsing not timed)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = [tuple(r) for r in reader]
    db = folder / "raw.db"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_time TEXT, event_type TEXT,"
            " product_id TEXT, category_id TEXT, category_code TEXT, brand TEXT, price TEXT,"
            " user_id TEXT, user_session TEXT)"
        )
        insert = (
            "INSERT INTO events (event_time, event_type, product_id, category_id,"
            " category_code, brand, price, user_id, user_session) VALUES (?,?,?,?,?,?,?,?,?)"
        )
        from tidings.service.replay import CHUNK  # the replay's transactions, not a guess

        start = time.perf_counter()
        for i in range(0, len(rows), CHUNK):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows[i : i + CHUNK])
            conn.execute("COMMIT")
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db}{suffix}").unlink()
    return len(rows) / seconds, len(rows)


def replay(path: Path, folder: Path) -> dict[str, float]:
    """`simulate` in process (tidings.bootstrap.simulation, as `tidings simulate` runs it):
    the file read and checked through the mapping, then replayed through the example workflows
    into a fresh SQLite file, messages written to an outbox folder; each phase timed."""
    # Imported here: the raw figure must not pay for (or be slowed by) the engine's imports.
    from tidings.bootstrap.simulation import SimulationRequest, read_file, simulate
    from tidings.settings import load_settings

    request = SimulationRequest(
        events=path,
        workflows_dir=REPO / "workflows",
        templates_dir=REPO / "templates",
        outbox_dir=folder / "outbox",
        mapping=REPO / "mappings" / "rees46.yaml",
        database_url=None,  # as `tidings simulate` by default: a fresh temporary SQLite file
    )
    start, cpu = time.perf_counter(), time.process_time()
    events = read_file(request)
    read_s, read_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    result = simulate(request, load_settings(environ={}), events)
    replay_s, replay_cpu = time.perf_counter() - start, time.process_time() - cpu
    if result.problems:
        sys.exit(f"example workflows do not load: {result.problems}")
    totals = result.report.totals
    return {
        "events": float(len(events)),
        "replayed": float(totals.replayed),
        "timers": float(totals.timers),
        "messages": float(totals.messages),
        "read_s": read_s,
        "replay_s": replay_s,
        "read_cpu": read_cpu,
        "replay_cpu": replay_cpu,
    }


def main() -> None:
    """Scale the sample, then measure raw inserts and the engine, `runs` times each."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help=f"{FULL_CLONES} clones, 1 run")
    parser.add_argument("--clones", type=int, help="copies of the sample (default 1)")
    parser.add_argument("--runs", type=int, help="runs (default 3; 1 with --full)")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help=f"default {SAMPLE_SHOWN}")
    parser.add_argument(
        "--default-gc", action="store_true", help="Python's collector settings, not the CLI's"
    )
    args = parser.parse_args()
    if not args.default_gc:
        from tidings.cli.main import settle_gc

        settle_gc()  # as `tidings simulate` starts: the figure is the command's
    clones = args.clones or (FULL_CLONES if args.full else 1)
    runs = args.runs or (1 if args.full else 3)
    header(
        "engine: simulate's replay of the scaled REES46 log through the example workflows, SQLite"
    )
    print(load_line())
    print("collector: " + ("Python's defaults" if args.default_gc else "as the CLI (settle_gc)"))
    with tempfile.TemporaryDirectory(prefix="tidings-bench-engine-") as name:
        folder = Path(name)
        log = folder / "rees46_scaled.csv"
        rows = write_scaled(args.sample, clones, log)
        print(
            f"log: {rows:,} rows ({clones} clone(s) of {SAMPLE_SHOWN}), {log.stat().st_size / 1e6:,.1f} MB\n"
        )
        raw: list[float] = []
        engine: list[float] = []
        reads: list[float] = []
        cpu_read: list[float] = []  # this process's CPU per event (the outbox writer's aside)
        cpu_replay: list[float] = []
        for n in range(runs):
            raw_rate, _ = raw_insert(log, folder)
            raw.append(raw_rate)
            result = replay(log, folder)
            shutil.rmtree(folder / "outbox", ignore_errors=True)
            rate = result["replayed"] / result["replay_s"]
            engine.append(rate)
            reads.append(result["events"] / result["read_s"])
            cpu_read.append(result["read_cpu"] / result["events"] * 1e6)
            cpu_replay.append(result["replay_cpu"] / result["replayed"] * 1e6)
            print(
                f"   run {n + 1}: raw sqlite3 {raw_rate:,.0f} rows/s; read+check {result['read_s']:.1f} s"
                f" ({reads[-1]:,.0f} events/s); replay {result['replay_s']:.1f} s: {rate:,.0f} events/s"
                f" ({result['replayed']:,.0f} events, {result['timers']:,.0f} timers fired,"
                f" {result['messages']:,.0f} messages); CPU {cpu_read[-1]:,.0f} us/event read,"
                f" {cpu_replay[-1]:,.0f} us/event replay",
                flush=True,
            )
    print()
    print(
        table(
            [
                ["figure", "median"],
                ["engine (replay through workflows and store), events/s", spread(engine)],
                ["read and check through the mapping, events/s", spread(reads)],
                ["CPU per event, replay (us, in process)", spread(cpu_replay)],
                ["CPU per event, read and check (us, in process)", spread(cpu_read)],
                ["raw sqlite3 batched inserts of the same rows, rows/s", spread(raw)],
                ["engine / raw", f"{median(engine) / median(raw):.1%}"],
            ]
        )
    )
    print(load_line())
    print("goal: >= 50,000 events/s on SQLite (a quarter of the raw insert speed)")


if __name__ == "__main__":
    main()
