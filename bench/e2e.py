"""End to end: events over HTTP -> abandoned-cart workflow with a 2 s wait -> emails at a local
SMTP server, with 10% of contacts ordering before the wait ends.

    .venv/bin/python -m bench.e2e            # 1,000 contacts, 3 runs
    .venv/bin/python -m bench.e2e --full     # 10,000 contacts, 3 runs

Each run starts the daemon (`tidings run`, fresh SQLite file, SMTP to bench/smtp_sink.py in its
own process) with one workflow: trigger `cart_updated` (total > 0), one run per cart, exit on
`order_completed` of that cart, `wait: 2s`, `send_email`. Contact i sends `cart_updated`;
every tenth contact also sends `order_completed` for its cart 0.5 s after its cart was
acknowledged, so before the wait ends. Every other contact must get exactly one email; the
ordering ones none.

Load generator: Python asyncio with `--connections` keep-alive HTTP/1.1 connections written by
hand (a request is a few bytes written and a status line read), because the generator must
sequence each contact's events (the order only after its cart was acknowledged) and keep the
time of each acknowledgement, which wrk cannot; a hand-written client costs the shared 2-core
machine several times less CPU per request than httpx. Its CPU is printed.

Figures: emails/s from the first event sent to the last email received; latency beyond the
wait = email received - cart acknowledged - 2 s (p50, p99, max); daemon CPU seconds per event
(events = carts + orders); daemon peak resident memory; and correctness: emails expected and
received, missing, duplicates, emails that arrived after their contact's order was acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    API_KEY,
    HOST,
    Sampler,
    daemon_env,
    free_port,
    header,
    load_line,
    median,
    mib,
    percentile,
    spread,
    start_daemon,
    start_sink,
    table,
    wait_for,
)

WAIT_S = 2.0
ORDER_AFTER_S = 0.5
WORKFLOW = f"""\
id: e2e_cart
name: Abandoned cart (benchmark)
trigger:
  event: cart_updated
  if: "event.properties.total > 0"
key: "{{{{ event.properties.cart_id }}}}"
mode: restart
exit:
  - event: order_completed
    if: "event.properties.cart_id == run.key"
    reason: ordered
steps:
  - wait: {WAIT_S:g}s
  - send_email: {{template: e2e_cart}}
"""
TEMPLATE = """---
subject: "{{ contact.FIRSTNAME }}, your cart {{ params.cart_id }} is waiting"
---
<p>Hello {{ contact.FIRSTNAME }}, your cart of {{ params.total }} EUR is waiting.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
"""


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the status."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        """POST and return the status (the body, if any, is read and dropped)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"api-key: {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def event(name: str, i: int) -> bytes:
    """Contact i's event."""
    body = {
        "event_name": name,
        "identifiers": {"email_id": f"c{i}@bench.example"},
        "contact_properties": {"FIRSTNAME": "Ann"},
        "event_properties": {"cart_id": f"cart-{i}", "total": 42.5, "currency": "EUR"},
    }
    return json.dumps(body).encode()


@dataclass
class Load:
    """What the generator did."""

    first_sent: float
    cart_acked: dict[int, float]
    order_acked: dict[int, float]
    failures: int
    cpu_s: float


async def generate(port: int, contacts: int, connections: int) -> Load:
    """Send every contact's cart (and every tenth contact's order, 0.5 s after its cart)."""
    # Orders have connections of their own: queued behind the carts they would go out late.
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    order_pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(port))
    for _ in range(max(2, connections // 4)):
        order_pool.put_nowait(Connection(port))
    cart_acked: dict[int, float] = {}
    order_acked: dict[int, float] = {}
    failures = 0
    orders: list[asyncio.Task[None]] = []

    async def send(name: str, i: int, connections: asyncio.Queue[Connection]) -> float | None:
        nonlocal failures
        conn = await connections.get()
        try:
            status = await conn.post("/v3/events", event(name, i))
        finally:
            connections.put_nowait(conn)
        if status != 204:
            failures += 1
            return None
        return time.monotonic()

    async def order(i: int) -> None:
        await asyncio.sleep(ORDER_AFTER_S)
        if (acked := await send("order_completed", i, order_pool)) is not None:
            order_acked[i] = acked

    async def worker(ids: range) -> None:
        for i in ids:
            acked = await send("cart_updated", i, pool)
            if acked is None:
                continue
            cart_acked[i] = acked
            if i % 10 == 0:
                orders.append(asyncio.create_task(order(i)))

    cpu = time.process_time()
    first = time.monotonic()
    await asyncio.gather(*(worker(range(w, contacts, connections)) for w in range(connections)))
    await asyncio.gather(*orders)
    cpu = time.process_time() - cpu
    for connections_left in (pool, order_pool):
        while not connections_left.empty():
            await connections_left.get_nowait().close()
    return Load(first, cart_acked, order_acked, failures, cpu)


@dataclass
class Result:
    """One run."""

    contacts: int
    events: int
    emails_per_s: float
    latency_s: list[float]
    cpu_per_event_ms: float
    peak_rss: int
    expected: int
    received: int
    missing: int
    duplicates: int
    to_ordered: int
    late_orders: int
    failures: int
    generator_cpu_s: float


def one_run(contacts: int, connections: int) -> Result:
    """A daemon, a sink, the load; wait for the emails; count."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-e2e-") as name:
        folder = Path(name)
        (folder / "workflows").mkdir()
        (folder / "templates").mkdir()
        (folder / "workflows" / "e2e_cart.yaml").write_text(WORKFLOW)
        (folder / "templates" / "e2e_cart.email.html").write_text(TEMPLATE)
        sink = start_sink(folder)
        env = daemon_env(folder, TIDINGS_SMTP_URL=sink.url)
        server = start_daemon(folder, free_port(), env)
        try:
            before = server.usage()
            with Sampler(server.proc.pid) as sampler:
                load = asyncio.run(generate(server.port, contacts, connections))
                ordered = set(load.order_acked)
                # An order acknowledged after the wait (a slow generator) may or may not stop
                # the email: such contacts are neither expected nor counted as wrong.
                late = {i for i in ordered if load.order_acked[i] - load.cart_acked[i] >= WAIT_S}
                expected = {f"c{i}@bench.example" for i in load.cart_acked if i not in ordered}
                wait_for(
                    lambda: sink.count() >= len(expected),
                    f"{len(expected)} emails",
                    timeout=max(120.0, contacts / 20),
                )
                # Late strays (duplicates, emails after an order) would show by now.
                time.sleep(WAIT_S + 1)
            after = server.usage()
            peak = max(sampler.peak_rss, after.peak_rss_bytes)
        finally:
            server.stop()
            sink.stop()
        received = sink.received()
    counts = Counter(rcpt for _, rcpt, _ in received)
    first_email: dict[str, float] = {}
    for at, rcpt, _ in received:
        first_email.setdefault(rcpt, at)
    latency = sorted(
        first_email[f"c{i}@bench.example"] - acked - WAIT_S
        for i, acked in load.cart_acked.items()
        if f"c{i}@bench.example" in first_email
    )
    order_acked = {f"c{i}@bench.example": at for i, at in load.order_acked.items()}
    # Wrong: an email that arrived after its contact's order was acknowledged.
    after_order = [r for at, r, _ in received if r in order_acked and at > order_acked[r]]
    last = max((at for at, _, _ in received), default=load.first_sent)
    events = len(load.cart_acked) + len(load.order_acked)
    return Result(
        contacts=contacts,
        events=events,
        emails_per_s=len(received) / (last - load.first_sent),
        latency_s=latency,
        cpu_per_event_ms=1000 * (after.cpu_s - before.cpu_s) / max(events, 1),
        peak_rss=peak,
        expected=len(expected),
        received=len(received),
        missing=len(expected - set(counts)),
        duplicates=sum(n - 1 for n in counts.values() if n > 1),
        to_ordered=len(after_order),
        late_orders=len(late),
        failures=load.failures,
        generator_cpu_s=load.cpu_s,
    )


def main() -> None:
    """`runs` runs; each printed, then the medians and totals."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="10,000 contacts per run")
    parser.add_argument("--contacts", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    contacts = args.contacts or (10_000 if args.full else 1_000)
    header("end to end: HTTP events -> abandoned cart (2 s wait) -> SMTP, the daemon on SQLite")
    print(load_line())
    results = []
    for n in range(args.runs):
        r = one_run(contacts, args.connections)
        results.append(r)
        print(
            f"   run {n + 1}: {r.contacts:,} contacts, {r.events:,} events; {r.emails_per_s:,.0f} emails/s;"
            f" beyond the wait p50 {percentile(r.latency_s, 50):.2f} s, p99 {percentile(r.latency_s, 99):.2f} s,"
            f" max {r.latency_s[-1] if r.latency_s else float('nan'):.2f} s; daemon CPU {r.cpu_per_event_ms:.2f} ms/event;"
            f" peak RSS {mib(r.peak_rss)}; expected {r.expected:,}, received {r.received:,}, missing {r.missing},"
            f" duplicates {r.duplicates}, after an acknowledged order {r.to_ordered}"
            f" ({r.late_orders} order(s) acknowledged only after the wait); HTTP failures {r.failures};"
            f" generator CPU {r.generator_cpu_s:.1f} s",
            flush=True,
        )
    print()
    print(
        table(
            [
                ["figure", "median (or total)", "goal"],
                [
                    "emails/s, first event to last email",
                    spread([r.emails_per_s for r in results]),
                    ">= 2,000",
                ],
                [
                    "latency beyond the wait, p99, s",
                    spread([percentile(r.latency_s, 99) for r in results], fmt=",.2f"),
                    "-",
                ],
                [
                    "daemon CPU per event, ms",
                    spread([r.cpu_per_event_ms for r in results], fmt=",.2f"),
                    "<= 0.3",
                ],
                [
                    "daemon peak resident memory",
                    mib(median([r.peak_rss for r in results])),
                    "<= 150 MB",
                ],
                [
                    "emails expected / received (total)",
                    f"{sum(r.expected for r in results):,} / {sum(r.received for r in results):,}",
                    "equal",
                ],
                ["missing (total)", str(sum(r.missing for r in results)), "0"],
                ["duplicates (total)", str(sum(r.duplicates for r in results)), "0"],
                [
                    "emails after an acknowledged order (total)",
                    str(sum(r.to_ordered for r in results)),
                    "0",
                ],
            ]
        )
    )
    print(load_line())


if __name__ == "__main__":
    main()
