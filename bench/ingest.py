"""Ingestion: events/s acknowledged durably over HTTP on loopback, single events and batches.

    .venv/bin/python -m bench.ingest            # default size: 3 runs x 8 s per mode
    .venv/bin/python -m bench.ingest --full     # 5 runs x 30 s per mode

Each run starts a fresh server on a fresh SQLite file (the daemon, `tidings run`, by default;
`--server app` serves the ingestion app alone, without the engine loop beside it), warms it up
for 1 s, then loads it for the run's duration and stops it. Then the events in the file are
counted: every acknowledged event must be there (an answer is sent only after the commit).

`--server floor` and `--server floor-http` measure the floor under these figures on the same
machine and load (`bench/floor_server.py`): a bare ASGI app under uvicorn that parses each
body and commits each event's JSON as one row (`floor`), or only reads the body and answers
(`floor-http`, nothing stored, so nothing counted as lost). No validation, contacts,
deduplication or engine: what Tidings does per event costs what lies above these.

The load generator is `wrk` (Debian package `wrk`) with `bench/wrk/events.lua`: one thread in
C, so on a 2-core machine it leaves as much of the machine as possible to the server, which a
Python generator could not (a Python client spends about as much CPU per request as the
server). It keeps `--connections` keep-alive connections busy, each sending its next request
when its previous one was answered. Every event is distinct (its counter is in its properties)
and contacts cycle through `BENCH_CONTACTS` ids per thread, so the figures include creating
contacts and finding existing ones. wrk's own CPU is printed too, since it shares the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    API_KEY,
    REPO,
    Server,
    count_rows,
    daemon_env,
    free_port,
    header,
    load_line,
    median,
    mib,
    run_child,
    spread,
    start_daemon,
    start_server,
    table,
)

LUA = REPO / "bench" / "wrk" / "events.lua"


@dataclass
class Run:
    """One measured run of one mode."""

    events_per_s: float
    requests: int
    acknowledged_events: int
    stored_events: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    wrk_cpu_s: float
    peak_rss: int
    errors: int


def wrk(
    url: str, *, seconds: float, connections: int, batch: int, run: str
) -> tuple[dict[str, int], float]:
    """One wrk run: its summary (from the Lua `done`) and its CPU seconds."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    env = {
        **os.environ,
        "BENCH_BATCH": str(batch),
        "BENCH_API_KEY": API_KEY,
        "BENCH_RUN": run,
        "BENCH_CONTACTS": "10000",
    }
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "60s",
        "-s", str(LUA), url,
    ]  # fmt: skip
    code, out, cpu = run_child(argv, env=env)
    lines = [line for line in out.splitlines() if line.startswith("BENCH ")]
    if code != 0 or not lines:
        raise RuntimeError(f"wrk failed ({code}):\n{out}")
    return json.loads(lines[-1][len("BENCH ") :]), cpu


def start(kind: str, folder: Path) -> Server:
    """A fresh server of `kind` on a fresh database in `folder`."""
    port = free_port()
    if kind == "daemon":
        return start_daemon(folder, port, daemon_env(folder))
    db = folder / "tidings.db"
    module = "bench.app_server" if kind == "app" else "bench.floor_server"
    argv = [
        sys.executable, "-m", module, "--port", str(port), "--database-url", f"sqlite:///{db}",
    ]  # fmt: skip
    if kind == "floor-http":
        argv.append("--http-only")
    return start_server(argv, port=port, env={}, log=folder / "app.log")


def one_run(kind: str, *, seconds: float, connections: int, batch: int, n: int) -> Run:
    """Start a server, warm it up, load it, stop it, count what it stored."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-ingest-") as name:
        folder = Path(name)
        server = start(kind, folder)
        try:
            wrk(server.url, seconds=1, connections=connections, batch=batch, run=f"w{n}")
            warm = count_rows(folder / "tidings.db", "SELECT count(*) FROM events")
            before = server.usage()
            summary, wrk_cpu = wrk(
                server.url, seconds=seconds, connections=connections, batch=batch, run=f"r{n}"
            )
            after = server.usage()
        finally:
            code = server.stop()
        if code not in (0, -15):  # -15: uvicorn.run re-raises the SIGTERM it handled
            print(f"warning: server exited with {code}", file=sys.stderr)
        stored = count_rows(folder / "tidings.db", "SELECT count(*) FROM events") - warm
    errors = sum(summary[k] for k in summary if k.endswith("errors") or k == "timeouts")
    ok = summary["requests"] - summary["status_errors"]
    acknowledged = ok * max(batch, 1)
    if kind == "floor-http":
        stored = acknowledged  # it stores nothing by design: nothing to count as lost
    return Run(
        events_per_s=acknowledged / (summary["duration_us"] / 1e6),
        requests=summary["requests"],
        acknowledged_events=acknowledged,
        stored_events=stored,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        server_cpu_s=after.cpu_s - before.cpu_s,
        wrk_cpu_s=wrk_cpu,
        peak_rss=after.peak_rss_bytes,
        errors=errors,
    )


def mode(
    name: str, kind: str, *, runs: int, seconds: float, connections: int, batch: int
) -> list[str]:
    """Measure one mode `runs` times; print each run; return its summary row."""
    print(
        f"-- {name}: {connections} connections, {batch or 1} event(s) per request, {runs} x {seconds:g} s"
    )
    results: list[Run] = []
    for n in range(runs):
        r = one_run(kind, seconds=seconds, connections=connections, batch=batch, n=n)
        results.append(r)
        lost = r.acknowledged_events - r.stored_events
        print(
            f"   run {n + 1}: {r.events_per_s:,.0f} events/s, p50 {r.p50_ms:,.1f} ms,"
            f" p99 {r.p99_ms:,.1f} ms, {r.acknowledged_events:,} acknowledged,"
            f" {r.stored_events:,} stored{' (LOST ' + str(lost) + ')' if lost > 0 else ''},"
            f" errors {r.errors}, server CPU {r.server_cpu_s:.1f} s"
            f" ({1e6 * r.server_cpu_s / max(r.acknowledged_events, 1):,.0f} us/event),"
            f" wrk CPU {r.wrk_cpu_s:.1f} s, server peak RSS {mib(r.peak_rss)}",
            flush=True,
        )
    cpu_per_event = [1e6 * r.server_cpu_s / max(r.acknowledged_events, 1) for r in results]
    lost = sum(max(0, r.acknowledged_events - r.stored_events) for r in results)
    return [
        name,
        spread([r.events_per_s for r in results]),
        f"{median([r.p50_ms for r in results]):,.1f}",
        f"{median([r.p99_ms for r in results]):,.1f}",
        f"{median(cpu_per_event):,.0f}",
        str(lost),
        str(sum(r.errors for r in results)),
    ]


def main() -> None:
    """Run both modes and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="5 runs x 30 s per mode")
    parser.add_argument("--runs", type=int, help="runs per mode (default 3; 5 with --full)")
    parser.add_argument("--seconds", type=float, help="load per run (default 8; 30 with --full)")
    parser.add_argument(
        "--server", choices=("daemon", "app", "floor", "floor-http"), default="daemon"
    )
    parser.add_argument("--connections", type=int, default=64, help="single-event mode")
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch request")
    parser.add_argument("--only", choices=("single", "batch"))
    args = parser.parse_args()
    runs = args.runs or (5 if args.full else 3)
    seconds = args.seconds or (30.0 if args.full else 8.0)
    header(
        f"ingestion over HTTP on loopback, server: {args.server} on SQLite, load: wrk (1 thread)"
    )
    print(load_line())
    rows = [
        [
            "mode",
            "events/s acknowledged (median)",
            "p50 ms",
            "p99 ms",
            "server CPU us/event",
            "lost",
            "errors",
        ]
    ]
    if args.only in (None, "single"):
        rows.append(
            mode(
                "single POST /v3/events",
                args.server,
                runs=runs,
                seconds=seconds,
                connections=args.connections,
                batch=0,
            )
        )
    if args.only in (None, "batch"):
        rows.append(
            mode(
                f"batch POST /v3/events/batch ({args.batch_size}/request)",
                args.server,
                runs=runs,
                seconds=seconds,
                connections=args.batch_connections,
                batch=args.batch_size,
            )
        )
    print()
    print(table(rows))
    print(load_line())
    print(
        "goals (2 cores, load generator included): >= 10,000 single events/s, >= 100,000 events/s in batches"
    )


if __name__ == "__main__":
    main()
