"""Delivery's two halves apart, in process, CPU per email: what `bench.delivery` measures
together, taken apart to A/B one change at a time on a busy machine.

    .venv/bin/python -m bench.delivery_parts              # both parts, 3 runs each
    .venv/bin/python -m bench.delivery_parts --part smtp  # SmtpSender alone
    .venv/bin/python -m bench.delivery_parts --part records

- smtp: `SmtpSender.send_email` of N messages (as `bench.delivery` seeds them) to
  `bench/smtp_sink.py` over 4 connections from 8 tasks, as the daemon's default; no outbox.
- records: the worker's transactions on a fresh SQLite outbox of N messages, without SMTP:
  the claims (100 a transaction), then transactions that each record k sent outcomes and check
  the next k messages for recall, as `DeliveryWorker` does when k sends finished together,
  each run off the event loop as the worker runs it (its transaction thread).

CPU is the process's (`time.process_time`), so other work on the machine counts less than in
wall-clock figures; medians of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import header, load_line, median, start_sink
from bench.delivery import emails, seed
from tidings.adapters.clock import SystemClock
from tidings.adapters.smtp import SmtpSender
from tidings.adapters.smtp_url import parse_smtp_url
from tidings.adapters.sql.store import SqlStore
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Environment
from tidings.model.messages import Message
from tidings.ports import UnitOfWork
from tidings.service.delivery import DeliveryWorker
from tidings.service.delivery_outcomes import Outcome
from tidings.service.registry import WorkflowRegistry

CONNECTIONS, TASKS = 4, 8
WAVES = (1, 2, 4)  # outcomes recorded (and messages checked) per transaction


async def _send_all(url: str, messages: list[Message]) -> float:
    """CPU seconds to send `messages` from TASKS tasks over CONNECTIONS connections."""
    sender = SmtpSender(parse_smtp_url(url), connections=CONNECTIONS)
    queue = list(reversed(messages))
    await sender.send_email(queue.pop())  # the first connection, outside the figure

    async def task() -> None:
        while queue:
            await sender.send_email(queue.pop())

    cpu = time.process_time()
    await asyncio.gather(*(task() for _ in range(TASKS)))
    cpu = time.process_time() - cpu
    await sender.aclose()
    return cpu


def smtp_runs(count: int, runs: int) -> list[float]:
    """us CPU per email of each run."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-smtp-") as name:
        sink = start_sink(Path(name))
        try:
            return [
                1e6 * asyncio.run(_send_all(sink.url, emails(count + 1, datetime.now(UTC)))) / count
                for _ in range(runs)
            ]
        finally:
            sink.stop()


def records_run(count: int, wave: int) -> tuple[float, float]:
    """us CPU per email of the claims and of the record-and-check transactions."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-records-") as name:
        store = SqlStore(f"sqlite:///{Path(name) / 'outbox.db'}")
        try:
            store.migrate()
            seed(store, count, datetime.now(UTC))
            catalog = TemplateCatalog.empty()
            env = Environment(templates=catalog, mail_from="shop@bench.example", sms_sender="Shop")
            unused = SmtpSender(parse_smtp_url("smtp://127.0.0.1:9"))  # no sends here
            worker = DeliveryWorker(
                store,
                unused,
                unused,  # type: ignore[arg-type]
                SystemClock(),
                registry=WorkflowRegistry(catalog),
                env=env,
            )

            def record_and_check(
                uow: UnitOfWork,
                done: list[tuple[Message, Outcome]],
                wave: list[tuple[int, Message]],
            ) -> None:
                worker._outcomes.record_all(uow, done)
                worker._check_again(uow, wave)

            async def transactions() -> tuple[float, float]:
                """CPU seconds of the claims, and of the record-and-check transactions, each
                run off the event loop as the worker runs them (`_in_store`)."""
                claimed: list[Message] = []
                cpu = time.process_time()
                while len(claimed) < count:
                    claimed += (await worker._in_store(worker._claim))[1]  # the clock's now
                claims = time.process_time() - cpu
                cpu = time.process_time()
                for start in range(0, count, wave):
                    sent = claimed[start : start + wave]
                    done = [(m, Outcome(reference=m.message_id)) for m in sent]
                    nexts = list(enumerate(claimed[start + wave : start + 2 * wave]))
                    check = functools.partial(record_and_check, done=done, wave=nexts)
                    await worker._in_store(check)
                return claims, time.process_time() - cpu

            claims, records = asyncio.run(transactions())
        finally:
            store.close()
    return 1e6 * claims / count, 1e6 * records / count


def main() -> None:
    """The parts asked for, `runs` times each."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["smtp", "records", "both"], default="both")
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    header("delivery parts, in process: SmtpSender alone; the worker's transactions alone")
    print(load_line())
    if args.part in ("smtp", "both"):
        cpu = smtp_runs(args.messages, args.runs)
        shown = ", ".join(f"{c:,.0f}" for c in cpu)
        print(f"smtp: {CONNECTIONS} connections, {TASKS} tasks: {median(cpu):,.0f} us CPU/email")
        print(f"   runs: {shown}", flush=True)
    if args.part in ("records", "both"):
        for wave in WAVES:
            results = [records_run(args.messages, wave) for _ in range(args.runs)]
            claims = median([c for c, _ in results])
            records = median([r for _, r in results])
            print(
                f"records: {wave} outcome(s) + {wave} check(s) a transaction:"
                f" {records:,.0f} us CPU/email (claims {claims:,.0f})",
                flush=True,
            )
    print(load_line())


if __name__ == "__main__":
    main()
