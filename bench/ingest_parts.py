"""Ingestion's parts apart, in process, CPU per event: what `bench.ingest` measures over HTTP,
without the HTTP server, to A/B one change at a time on a busy machine.

    .venv/bin/python -m bench.ingest_parts                 # batches of 100, 3 runs
    .venv/bin/python -m bench.ingest_parts --mode single   # one event a request

Each run builds the daemon's components (`build_components`, no workflows) on a fresh SQLite
file and feeds them the bodies `bench/wrk/events.lua` sends (every event distinct, contacts
cycling through 10,000, so about a third of them are created), in three parts per group of
requests, as the daemon's group-commit writer and engine loop take them:

- validate: each request's body parsed and checked (`brevo_batch` / `brevo_event`) and its
  submission built (dedup keys);
- write: `IngestService.write` of the group's submissions, one transaction;
- engine: `Processor.run_until_idle` over what the group stored.

CPU is the process's (`time.process_time`): other work on the machine counts less than in
wall-clock figures. The best of the runs is printed per part (the least disturbed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import header, load_line
from tidings.bootstrap.components import build_components
from tidings.model.events import Event
from tidings.service.ingest import IngestService, Submission
from tidings.service.processing import Processor
from tidings.service.shapes import brevo_batch, brevo_event
from tidings.service.validation import parse_json
from tidings.settings import Settings

CONTACTS = 10_000
KEY_ID = "bench"


def event_json(run: str, n: int) -> str:
    """Event `n` of a run, as `bench/wrk/events.lua` writes it (its one thread)."""
    contact = n % CONTACTS
    return (
        f'{{"event_name":"cart_updated","identifiers":{{"email_id":"{run}-t1-c{contact}'
        f'@bench.example"}},"contact_properties":{{"FIRSTNAME":"Ann"}},'
        f'"event_properties":{{"cart_id":"{run}-t1-{n}","total":42.5,'
        f'"items":[{{"sku":"SKU-{n % 997}","name":"Mug","price":12.5,"quantity":1}}]}}}}'
    )


def bodies(run: str, requests: int, batch: int) -> list[bytes]:
    """`requests` request bodies: batches of `batch` events, or single events (0)."""
    if batch == 0:
        return [event_json(run, n).encode() for n in range(1, requests + 1)]
    requests_events = (
        ",".join(event_json(run, k * batch + j) for j in range(1, batch + 1))
        for k in range(requests)
    )
    return [f'{{"events":[{events}]}}'.encode() for events in requests_events]


@dataclass
class Parts:
    """us CPU per event of each part of one run."""

    validate: float
    write: float
    engine: float

    @property
    def total(self) -> float:
        """All three."""
        return self.validate + self.write + self.engine


def _submission(ingest: IngestService, body: bytes, *, batch: bool) -> Submission:
    now = ingest.clock.now()
    events: list[Event]
    if batch:
        events = brevo_batch(parse_json(body), now=now, limits=ingest.limits)
    else:
        events = [brevo_event(parse_json(body), now=now, limits=ingest.limits)]
    return ingest.submission(events, key_id=KEY_ID, body=body, batch=batch)


def one_run(n: int, *, requests: int, batch: int, group: int) -> Parts:
    """Feed `requests` bodies in groups of `group` requests to fresh components."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-ingest-parts-") as name:
        folder = Path(name)
        settings = Settings(
            database_url=f"sqlite:///{folder / 'tidings.db'}",
            workflows_dir=folder / "workflows",
            templates_dir=folder / "templates",
            outbox_dir=folder / "outbox",
            secret_key="bench-secret",
        )
        settings.workflows_dir.mkdir()
        settings.templates_dir.mkdir()
        components = build_components(settings)
        try:
            ingest = IngestService(components.store, components.clock)
            processor = Processor(
                components.store, components.registry, components.env, components.clock
            )
            for body in bodies(f"w{n}", 4, batch):  # warm-up: statements compiled, caches made
                ingest.write([_submission(ingest, body, batch=batch > 0)])
            processor.run_until_idle()
            validate = write = engine = 0.0
            events = 0
            todo = bodies(f"r{n}", requests, batch)
            for start in range(0, len(todo), group):
                began = time.process_time()
                submissions = [
                    _submission(ingest, b, batch=batch > 0) for b in todo[start:][:group]
                ]
                checked = time.process_time()
                results = ingest.write(submissions)
                written = time.process_time()
                processor.run_until_idle()
                done = time.process_time()
                failed = [r for r in results if isinstance(r, Exception)]
                if failed:
                    raise RuntimeError(f"a write failed: {failed[0]!r}")
                events += sum(len(s.events) for s in submissions)
                validate += checked - began
                write += written - checked
                engine += done - written
        finally:
            components.close()
    return Parts(1e6 * validate / events, 1e6 * write / events, 1e6 * engine / events)


def main() -> None:
    """Run the parts `--runs` times and print each run and the best of each part."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("batch", "single"), default="batch")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=30_000, help="events per run")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch request")
    parser.add_argument(
        "--group", type=int, help="requests per transaction (default: 2 batches, 32 singles)"
    )
    args = parser.parse_args()
    batch = args.batch_size if args.mode == "batch" else 0
    group = args.group or (2 if batch else 32)
    requests = args.events // max(batch, 1)
    header(f"ingestion's parts in process on SQLite: {args.mode}, {group} requests a transaction")
    print(load_line())
    runs = []
    for n in range(args.runs):
        parts = one_run(n, requests=requests, batch=batch, group=group)
        runs.append(parts)
        print(
            f"   run {n + 1}: validate {parts.validate:.1f}, write {parts.write:.1f},"
            f" engine {parts.engine:.1f}, total {parts.total:.1f} us CPU/event",
            flush=True,
        )
    print(
        f"best: validate {min(r.validate for r in runs):.1f}, write {min(r.write for r in runs):.1f},"
        f" engine {min(r.engine for r in runs):.1f}, total {min(r.total for r in runs):.1f}"
        " us CPU/event"
    )
    print(load_line())


if __name__ == "__main__":
    main()
