"""Delivery: messages/s from the outbox (SQLite) to a local SMTP server (aiosmtpd), with one
reused connection and with parallel connections.

    .venv/bin/python -m bench.delivery            # 1,000 messages, 3 runs per setting
    .venv/bin/python -m bench.delivery --full     # 10,000 messages, 3 runs per setting

Each run: a fresh SQLite outbox holding N pending emails (each with a subject, an HTML and a
text part, as the engine records them), then the daemon's `DeliveryWorker` over `SmtpSender`
drains it: claims in batches of 100 under a lease, sends as many at once as the setting
allows (each send after the first ones checked again for recall, in the transaction that
records the outcomes that finished before it: sent, provider id, trace entry). Timed from the
first claim until every
message is recorded sent. The SMTP server (bench/smtp_sink.py) runs in its own process and
counts what it received: every message must arrive exactly once. Its own CPU per email is
printed too: it shares the two cores with the daemon here, and bench.e2e's goals with it.

Settings: `connections` is SmtpSender's pool (each connection is kept open and reused for the
next message), `concurrency` the worker's sends in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import count_rows, header, load_line, median, spread, start_sink, table
from tidings.adapters.clock import SystemClock
from tidings.adapters.smtp import SmtpSender
from tidings.adapters.smtp_url import parse_smtp_url
from tidings.adapters.sql.store import SqlStore
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Environment
from tidings.model.contacts import Channel
from tidings.model.messages import Message
from tidings.service.delivery import DeliveryWorker
from tidings.service.registry import WorkflowRegistry

SETTINGS = [(1, 1), (4, 8), (8, 8)]  # (connections, concurrency); (4, 8) is the daemon's default
HTML = (
    "<html><body><p>Hello Ann,</p><p>Your cart of <b>42.50 EUR</b> is waiting:</p>"
    "<ul><li>Mug x 1</li><li>Tea x 2</li></ul><p><a href='http://127.0.0.1/u/x'>Unsubscribe</a>"
    "</p></body></html>"
)
TEXT = "Hello Ann,\n\nYour cart of 42.50 EUR is waiting:\n- Mug x 1\n- Tea x 2\n"


@dataclass
class Result:
    """One run."""

    rate: float
    sent: int
    received: int
    duplicates: int
    cpu_us_per_message: float
    sink_cpu_us_per_message: float
    connections_opened: int


def emails(count: int, now: datetime) -> list[Message]:
    """The bench's `count` emails, due at `now`."""
    return [
        Message(
            key=f"bench:{i}:email",
            channel=Channel.email,
            run_id=f"run-{i}",
            contact_id=str(i),
            workflow_id="bench",
            step="steps[1]",
            to=f"contact{i}@bench.example",
            sender="Shop <shop@bench.example>",
            subject=f"Ann, your cart {i} is waiting",
            html=HTML,
            text=TEXT,
            created_at=now,
            not_before=now,
        )
        for i in range(count)
    ]


def seed(store: SqlStore, count: int, now: datetime) -> None:
    """`count` pending emails in the outbox."""
    messages = emails(count, now)
    for start in range(0, count, 1000):
        with store.transaction() as uow:
            uow.add_messages(messages[start : start + 1000])


async def drain(
    store: SqlStore, url: str, connections: int, concurrency: int
) -> tuple[float, int, int]:
    """Drain the outbox; (seconds, messages sent, connections opened)."""
    sender = SmtpSender(parse_smtp_url(url), connections=connections, timeout_s=30)
    # No runs behind the bench's messages: nothing to recall, so no workflows either.
    catalog = TemplateCatalog.empty()
    worker = DeliveryWorker(
        store,
        sender,
        sender,  # type: ignore[arg-type]
        SystemClock(),
        registry=WorkflowRegistry(catalog),
        env=Environment(templates=catalog, mail_from="shop@bench.example", sms_sender="Shop"),
        batch=100,
        concurrency=concurrency,
    )
    start = time.perf_counter()
    stats = await worker.drain()
    seconds = time.perf_counter() - start
    await sender.aclose()
    return seconds, stats.sent, sender.connections_opened


def one_run(count: int, connections: int, concurrency: int) -> Result:
    """A fresh outbox of `count` emails, drained to a fresh SMTP server."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-delivery-") as name:
        folder = Path(name)
        store = SqlStore(f"sqlite:///{folder / 'outbox.db'}")
        sink = start_sink(folder)
        try:
            store.migrate()
            seed(store, count, datetime.now(UTC))
            cpu, sink_cpu = time.process_time(), sink.usage().cpu_s
            seconds, sent, opened = asyncio.run(drain(store, sink.url, connections, concurrency))
            cpu, sink_cpu = time.process_time() - cpu, sink.usage().cpu_s - sink_cpu
            left = count_rows(
                folder / "outbox.db", "SELECT count(*) FROM messages WHERE status != 'sent'"
            )
        finally:
            store.close()
            sink.stop()
        received = Counter(rcpt for _, rcpt, _ in sink.received())
    if left:
        raise RuntimeError(f"{left} message(s) still pending after the drain")
    return Result(
        rate=sent / seconds,
        sent=sent,
        received=sum(received.values()),
        duplicates=sum(n - 1 for n in received.values() if n > 1),
        cpu_us_per_message=1e6 * cpu / max(sent, 1),
        sink_cpu_us_per_message=1e6 * sink_cpu / max(sent, 1),
        connections_opened=opened,
    )


def main() -> None:
    """Every setting, `runs` times."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="10,000 messages per run")
    parser.add_argument("--messages", type=int)
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    count = args.messages or (10_000 if args.full else 1_000)
    runs = args.runs or 3
    header("delivery: outbox (SQLite) -> SmtpSender -> aiosmtpd on loopback")
    print(load_line())
    rows = [
        [
            "connections",
            "sends in flight",
            "emails/s (median)",
            "delivery CPU us/email",
            "SMTP server CPU us/email",
            "received",
            "duplicates",
        ]
    ]
    for connections, concurrency in SETTINGS:
        results = [one_run(count, connections, concurrency) for _ in range(runs)]
        for n, r in enumerate(results):
            print(
                f"   {connections} connection(s), {concurrency} in flight, run {n + 1}: {r.rate:,.0f} emails/s,"
                f" {r.sent:,} sent, {r.received:,} received, {r.duplicates} duplicates,"
                f" {r.connections_opened} connection(s) opened, {r.cpu_us_per_message:,.0f} us CPU/email,"
                f" SMTP server {r.sink_cpu_us_per_message:,.0f} us CPU/email",
                flush=True,
            )
        rows.append(
            [
                str(connections),
                str(concurrency),
                spread([r.rate for r in results]),
                f"{median([r.cpu_us_per_message for r in results]):,.0f}",
                f"{median([r.sink_cpu_us_per_message for r in results]):,.0f}",
                f"{sum(r.received for r in results):,} of {sum(r.sent for r in results):,}",
                str(sum(r.duplicates for r in results)),
            ]
        )
    print()
    print(table(rows))
    print(load_line())
    print("goal: >= 1,000 emails/s")


if __name__ == "__main__":
    main()
