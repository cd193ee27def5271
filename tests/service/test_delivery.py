"""The delivery worker over real parts: an SMTP server, an SMS carrier and an outbox folder.

Time is a ManualClock: a retry is due when the clock says so, never after a sleep. Each
scenario runs in one event loop so that the SMTP connection pool lives as long as it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.messages import T0, make_message, make_sms
from support.senders import Crash, CrashAfterSending, ScriptedSender
from support.sms_carrier import FakeSmsCarrier
from support.smtp_server import SmtpTestServer
from tidings.adapters.clock import ManualClock
from tidings.adapters.memory import MemoryStore
from tidings.adapters.outbox_dir import OutboxDirSender
from tidings.adapters.sms_http import HttpSmsSender
from tidings.adapters.smtp import SmtpSender
from tidings.adapters.smtp_url import parse_smtp_url
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Environment
from tidings.errors import TemporaryDeliveryError
from tidings.model.messages import Message, MessageStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Store
from tidings.service.delivery import DeliveryStats, DeliveryWorker, retry_delay
from tidings.service.registry import WorkflowRegistry

BASE_S = 30.0
MAX_S = 3600.0


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def smtp_sender(server: SmtpTestServer, **options: Any) -> SmtpSender:
    url = parse_smtp_url(f"smtp://{server.host}:{server.port}?helo=worker.test")
    return SmtpSender(url, **options)


def make_worker(
    store: Store,
    clock: ManualClock,
    email: Any = None,
    sms: Any = None,
    **options: Any,
) -> DeliveryWorker:
    options = {"backoff_base_s": BASE_S, "backoff_max_s": MAX_S} | options
    unused = OutboxDirSender(Path("/nonexistent/outbox-not-used"))
    catalog = TemplateCatalog.empty()  # these messages' runs are not stored: no goals to judge
    env = Environment(templates=catalog, mail_from="shop@example.com", sms_sender="Shop")
    registry = WorkflowRegistry(catalog)
    return DeliveryWorker(
        store, email or unused, sms or unused, clock, registry=registry, env=env, **options
    )


def queue(store: Store, *messages: Message) -> None:
    with store.transaction() as uow:
        uow.add_messages(messages)


def stored(store: Store, message: Message) -> Message:
    with store.transaction() as uow:
        found = uow.get_message(message.key)
    assert found is not None
    return found


def traced(store: Store, message: Message) -> list[TraceEntry]:
    with store.transaction() as uow:
        return [
            e for e in uow.trace_for_contact(message.contact_id) if e.data.get("key") == message.key
        ]


def run(scenario: Callable[[], Awaitable[Any]], *closing: SmtpSender | HttpSmsSender) -> Any:
    """Run a scenario in a fresh event loop, then close the senders' connections in it."""

    async def main() -> Any:
        try:
            return await scenario()
        finally:
            for sender in closing:
                await sender.aclose()

    return asyncio.run(main())


# Backoff.


@pytest.mark.parametrize(
    ("attempts", "ceiling_s"),
    [(1, 30), (2, 60), (3, 120), (5, 480), (7, 1920), (8, 3600), (20, 3600), (10_000, 3600)],
)
def test_retry_delay_doubles_up_to_the_cap_with_jitter_in_the_upper_half(
    attempts: int, ceiling_s: float
) -> None:
    delays = [
        retry_delay(f"run-{n}:0", attempts, base_s=BASE_S, max_s=MAX_S).total_seconds()
        for n in range(50)
    ]

    assert all(ceiling_s / 2 <= d <= ceiling_s for d in delays)
    assert len(set(delays)) == 50  # spread out, so an outage's backlog does not return at once
    assert delays[7] == retry_delay("run-7:0", attempts, base_s=BASE_S, max_s=MAX_S).total_seconds()


# Sending and recording.


def test_sent_messages_are_recorded_with_a_delivered_trace(
    store: Store, clock: ManualClock, smtp: SmtpTestServer
) -> None:
    messages = [make_message(n) for n in (1, 2, 3)]
    queue(store, *messages)
    sender = smtp_sender(smtp)
    worker = make_worker(store, clock, email=sender)

    async def scenario() -> DeliveryStats:
        async with sender:
            return await worker.run_once()

    assert run(scenario) == DeliveryStats(claimed=3, sent=3)
    for message in messages:
        row = stored(store, message)
        assert (row.status, row.attempts, row.sent_at) == (MessageStatus.sent, 1, T0)
        assert row.provider_id == message.message_id
        [entry] = traced(store, message)
        assert (entry.kind, entry.at, entry.run_id, entry.step) == (
            TraceKind.delivered,
            T0,
            message.run_id,
            "0",
        )
        assert entry.message == f"email to {message.to} delivered"
    got = {r.rcpt_tos[0]: r.message() for r in smtp.received}
    assert sorted(got) == ["user1@example.org", "user2@example.org", "user3@example.org"]
    mail = got["user2@example.org"]
    assert (mail["Subject"], mail["Message-ID"]) == ("Hello 2", "<run-2.0@tidings>")
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert worker.next_due_at() is None


def test_a_4xx_is_retried_later_and_delivered_once(
    store: Store, clock: ManualClock, smtp: SmtpTestServer
) -> None:
    message = make_message(1)
    queue(store, message)
    smtp.refuse("user1@example.org", "451 4.7.1 Greylisted, try again", times=1)
    sender = smtp_sender(smtp)
    worker = make_worker(store, clock, email=sender)
    delay = retry_delay(message.key, 1, base_s=BASE_S, max_s=MAX_S)

    async def scenario() -> list[DeliveryStats]:
        async with sender:
            first = await worker.run_once()
            early = await worker.run_once()  # nothing is due yet
            clock.advance(delay)
            return [first, early, await worker.run_once()]

    first, early, later = run(scenario)

    assert first == DeliveryStats(claimed=1, retrying=1)
    assert early == DeliveryStats()
    assert later == DeliveryStats(claimed=1, sent=1)
    row = stored(store, message)
    assert (row.status, row.attempts, row.sent_at) == (MessageStatus.sent, 2, T0 + delay)
    assert row.last_error is None
    assert [r.rcpt_tos for r in smtp.received] == [("user1@example.org",)]
    assert smtp.refused == [("user1@example.org", "451 4.7.1 Greylisted, try again")]


def test_a_retry_waits_for_its_backoff_and_says_why(store: Store, clock: ManualClock) -> None:
    message = make_message(1)
    queue(store, message)
    with SmtpTestServer() as server:
        server.refuse("user1@example.org", "452 4.2.2 Mailbox full")
        sender = smtp_sender(server)
        worker = make_worker(store, clock, email=sender)

        run(worker.run_once, sender)

    row = stored(store, message)
    delay = retry_delay(message.key, 1, base_s=BASE_S, max_s=MAX_S)
    assert (row.status, row.attempts) == (MessageStatus.pending, 1)
    assert row.next_attempt_at == T0 + delay
    assert row.last_error == "452 4.2.2 Mailbox full"
    assert worker.next_due_at() == T0 + delay
    assert traced(store, message) == []  # a retry is not a decision: the row says it all


def test_a_5xx_fails_with_the_reply_and_the_rest_of_the_batch_goes_out(
    store: Store, clock: ManualClock, smtp: SmtpTestServer
) -> None:
    messages = [make_message(n) for n in range(1, 6)]
    queue(store, *messages)
    smtp.refuse("user3@example.org", "550 5.1.1 <user3@example.org>: Recipient unknown")
    sender = smtp_sender(smtp, connections=1)
    worker = make_worker(store, clock, email=sender)

    async def scenario() -> list[DeliveryStats]:
        async with sender:
            first = await worker.run_once()
            clock.advance(timedelta(days=1))
            return [first, await worker.run_once()]

    assert run(scenario) == [DeliveryStats(claimed=5, sent=4, failed=1), DeliveryStats()]
    row = stored(store, messages[2])
    assert (row.status, row.attempts) == (MessageStatus.failed, 1)
    assert row.last_error == "550 5.1.1 <user3@example.org>: Recipient unknown"
    [entry] = traced(store, messages[2])
    assert entry.kind is TraceKind.delivery_failed
    assert entry.data["error"] == "550 5.1.1 <user3@example.org>: Recipient unknown"
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [
        f"user{n}@example.org" for n in (1, 2, 4, 5)
    ]


def test_an_outage_delays_messages_and_each_is_delivered_exactly_once(
    store: Store, clock: ManualClock, smtp: SmtpTestServer
) -> None:
    messages = [make_message(n) for n in range(1, 9)]
    queue(store, *messages)
    sender = smtp_sender(smtp, connections=2)
    worker = make_worker(store, clock, email=sender, concurrency=4)

    async def scenario() -> list[DeliveryStats]:
        async with sender:
            smtp.stop()
            down = await worker.run_once()
            smtp.start()  # the same port again
            not_yet = await worker.run_once()
            clock.advance(timedelta(seconds=BASE_S))
            back = await worker.run_once()
            return [down, not_yet, back, await worker.run_once()]

    down, not_yet, back, after = run(scenario)

    assert down == DeliveryStats(claimed=8, retrying=8)
    assert not_yet == DeliveryStats()
    assert back == DeliveryStats(claimed=8, sent=8)
    assert after == DeliveryStats()
    rows = [stored(store, m) for m in messages]
    assert {(r.status, r.attempts) for r in rows} == {(MessageStatus.sent, 2)}
    received = sorted(r.rcpt_tos[0] for r in smtp.received)
    assert received == sorted(m.to for m in messages)  # each once
    assert worker.next_due_at() is None


def test_an_outage_spreads_the_retries_and_records_the_error(
    store: Store, clock: ManualClock
) -> None:
    messages = [make_message(n) for n in range(1, 6)]
    queue(store, *messages)
    with SmtpTestServer() as server:
        server.stop()
        sender = smtp_sender(server)
        run(make_worker(store, clock, email=sender).run_once, sender)

    rows = [stored(store, m) for m in messages]
    assert {r.status for r in rows} == {MessageStatus.pending}
    assert len({r.next_attempt_at for r in rows}) == 5
    for row in rows:
        assert row.next_attempt_at is not None
        assert T0 + timedelta(seconds=BASE_S / 2) <= row.next_attempt_at
        assert row.next_attempt_at <= T0 + timedelta(seconds=BASE_S)
        assert f"127.0.0.1:{server.port}" in (row.last_error or "")


async def follow_retries(worker: DeliveryWorker, clock: ManualClock, until: datetime) -> int:
    """Run a round each time a message is due, up to `until`; how many rounds that took."""
    rounds = 0
    while (due := worker.next_due_at()) is not None and due <= until:
        clock.set(max(due, clock.now()))
        await worker.run_once()
        rounds += 1
    return rounds


def test_a_two_hour_outage_delays_messages_and_each_is_delivered_once(
    store: Store, clock: ManualClock, smtp: SmtpTestServer
) -> None:
    messages = [make_message(n) for n in range(1, 6)]
    queue(store, *messages)
    sender = smtp_sender(smtp, connections=2)
    worker = make_worker(store, clock, email=sender)  # the daemon's defaults
    back_at = T0 + timedelta(hours=2)

    async def scenario() -> DeliveryStats:
        async with sender:
            smtp.stop()
            await follow_retries(worker, clock, back_at)
            smtp.start()  # the same port again
            clock.set(back_at)
            await follow_retries(worker, clock, back_at + timedelta(hours=1))
            return await worker.drain()

    assert run(scenario) == DeliveryStats()  # nothing left to do
    rows = [stored(store, m) for m in messages]
    assert {r.status for r in rows} == {MessageStatus.sent}
    assert all(r.attempts > 8 for r in rows)  # past the old fixed limit of 8 attempts
    assert all(back_at < (r.sent_at or T0) <= back_at + timedelta(hours=1) for r in rows)
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == sorted(m.to for m in messages)
    assert worker.next_due_at() is None


def test_a_message_failing_past_the_max_age_fails_with_the_reason(
    clock: ManualClock, smtp: SmtpTestServer
) -> None:
    store = MemoryStore()
    message, later = make_message(1), make_message(2, not_before=T0 + timedelta(days=1))
    queue(store, message, later)
    smtp.refuse("user1@example.org", "421 4.3.2 Service not available")
    smtp.refuse("user2@example.org", "421 4.3.2 Service not available")
    sender = smtp_sender(smtp)
    worker = make_worker(store, clock, email=sender)  # max age: 3 days by default
    deadline = T0 + timedelta(days=3)

    async def scenario() -> None:
        async with sender:
            await follow_retries(worker, clock, deadline - timedelta(seconds=1))
            assert stored(store, message).status is MessageStatus.pending
            assert stored(store, message).next_attempt_at == deadline  # not a backoff past it
            await follow_retries(worker, clock, deadline)

    run(scenario)

    row = stored(store, message)
    assert (row.status, row.next_attempt_at) == (MessageStatus.failed, None)
    assert row.attempts == len([r for r in smtp.refused if r[0] == "user1@example.org"]) > 70
    assert row.last_error == (
        f"gave up after {row.attempts} attempts over 3d (delivery max age 3d):"
        " 421 4.3.2 Service not available"
    )
    [entry] = traced(store, message)
    assert (entry.kind, entry.at, entry.data["error"]) == (
        TraceKind.delivery_failed,
        deadline,
        row.last_error,
    )
    # The age counts from when a message was due: the one deferred a day still has a day.
    assert stored(store, later).status is MessageStatus.pending


def test_the_max_age_is_set_per_worker(clock: ManualClock) -> None:
    store = MemoryStore()
    message = make_message(1)
    queue(store, message)
    sender = ScriptedSender({"user1@example.org": TemporaryDeliveryError("451 later")})
    worker = make_worker(store, clock, email=sender, max_age=timedelta(seconds=10))

    assert run(worker.run_once) == DeliveryStats(claimed=1, retrying=1)
    assert stored(store, message).next_attempt_at == T0 + timedelta(seconds=10)  # not ~30 s
    clock.advance(timedelta(seconds=10))
    assert run(worker.run_once) == DeliveryStats(claimed=1, failed=1)
    assert stored(store, message).last_error == (
        "gave up after 2 attempts over 10s (delivery max age 10s): 451 later"
    )


def test_a_message_deferred_by_not_before_waits_for_its_time(
    store: Store, clock: ManualClock, smtp: SmtpTestServer
) -> None:
    later = make_message(1, not_before=T0 + timedelta(hours=8))
    queue(store, later)
    sender = smtp_sender(smtp)
    worker = make_worker(store, clock, email=sender)

    async def scenario() -> list[DeliveryStats]:
        async with sender:
            early = await worker.run_once()
            clock.advance(timedelta(hours=8))
            return [early, await worker.run_once()]

    assert worker.next_due_at() == T0 + timedelta(hours=8)
    assert run(scenario) == [DeliveryStats(), DeliveryStats(claimed=1, sent=1)]
    assert stored(store, later).sent_at == T0 + timedelta(hours=8)


# SMTP specifics through the worker.


def test_connections_are_reused_across_a_batch(clock: ManualClock, smtp: SmtpTestServer) -> None:
    store = MemoryStore()
    queue(store, *(make_message(n) for n in range(20)))
    sender = smtp_sender(smtp, connections=2)
    worker = make_worker(store, clock, email=sender, concurrency=8)

    async def scenario() -> DeliveryStats:
        async with sender:
            return await worker.run_once()

    assert run(scenario) == DeliveryStats(claimed=20, sent=20)
    assert len(smtp.received) == 20
    assert smtp.sessions <= 2


@pytest.mark.parametrize(
    ("smtputf8", "status", "error"),
    [
        (True, MessageStatus.sent, None),
        (
            False,
            MessageStatus.failed,
            "jürgen@example.org: address needs SMTPUTF8, which the server does not offer",
        ),
    ],
)
def test_a_non_ascii_mailbox_needs_a_server_offering_smtputf8(
    clock: ManualClock, smtputf8: bool, status: MessageStatus, error: str | None
) -> None:
    store = MemoryStore()
    unicode_box, plain = make_message(1, to="jürgen@example.org"), make_message(2)
    queue(store, unicode_box, plain)
    with SmtpTestServer(smtputf8=smtputf8) as server:
        sender = smtp_sender(server)
        run(make_worker(store, clock, email=sender).run_once, sender)

    row = stored(store, unicode_box)
    assert (row.status, row.last_error) == (status, error)
    assert stored(store, plain).status is MessageStatus.sent
    assert [r.smtp_utf8 for r in server.received if r.rcpt_tos == ("jürgen@example.org",)] == (
        [True] if smtputf8 else []
    )


# SMS.


def test_sms_goes_through_the_carrier_and_a_5xx_is_retried(
    store: Store, clock: ManualClock
) -> None:
    message = make_sms(1, text="Votre code : 4242")
    queue(store, message)
    with FakeSmsCarrier() as carrier:
        carrier.fail_next(503, {"code": "unavailable", "message": "maintenance"})
        sms = HttpSmsSender(carrier.base_url, carrier.api_key, sender="Tidings", timeout_s=5)
        worker = make_worker(store, clock, sms=sms)

        async def scenario() -> list[DeliveryStats]:
            async with sms:
                first = await worker.run_once()
                clock.advance(timedelta(seconds=BASE_S))
                return [first, await worker.run_once()]

        rounds = run(scenario)

    assert rounds == [DeliveryStats(claimed=1, retrying=1), DeliveryStats(claimed=1, sent=1)]
    assert len(carrier.requests) == 2
    assert all(r.headers["api-key"] == carrier.api_key for r in carrier.requests)
    [body] = carrier.sent
    assert body == {
        "sender": "Tidings",
        "recipient": "+33612345671",
        "content": "Votre code : 4242",
        "type": "transactional",
        "tag": "welcome",
        "unicodeEnabled": False,
    }
    row = stored(store, message)
    assert (row.status, row.attempts, row.provider_id) == (
        MessageStatus.sent,
        2,
        "ab1cde2fgh3i4jklmno1",
    )


# Crashes and surprises.


def test_a_crash_mid_send_is_recovered_after_the_lease_without_a_second_file(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    mail, text = make_message(1), make_sms(2)
    queue(store, mail, text)
    folder = OutboxDirSender(tmp_path / "outbox")
    crashing = CrashAfterSending(folder, crashes=2)
    lease = timedelta(minutes=5)
    dying = make_worker(store, clock, email=crashing, sms=crashing, lease=lease)

    with pytest.raises(Crash):
        run(dying.run_once)

    assert {stored(store, m).status for m in (mail, text)} == {MessageStatus.sending}
    assert dying.next_due_at() == T0 + lease
    survivor = make_worker(store, clock, email=folder, sms=folder, lease=lease)
    assert run(survivor.run_once) == DeliveryStats()  # the lease still holds
    clock.advance(lease)
    assert run(survivor.run_once) == DeliveryStats(claimed=2, sent=2)
    for message in (mail, text):
        row = stored(store, message)
        assert (row.status, row.attempts) == (MessageStatus.sent, 1)
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == sorted(
        [folder.path_for(mail).name, folder.path_for(text).name]
    )
    assert crashing.calls == 2  # one attempt each before the crash, one after: no more


def test_a_crash_after_smtp_accepted_sends_again_with_the_same_message_id(
    clock: ManualClock, smtp: SmtpTestServer
) -> None:
    # At-least-once at the SMTP boundary: the server took the message, we died before writing
    # that down. The resend carries the same Message-ID so the receiver can drop the copy.
    store = MemoryStore()
    message = make_message(1)
    queue(store, message)
    sender = smtp_sender(smtp)
    lease = timedelta(minutes=5)

    async def scenario() -> DeliveryStats:
        async with sender:
            with pytest.raises(Crash):
                await make_worker(store, clock, email=CrashAfterSending(sender)).run_once()
            clock.advance(lease)
            return await make_worker(store, clock, email=sender).run_once()

    assert run(scenario) == DeliveryStats(claimed=1, sent=1)
    ids = [r.message()["Message-ID"] for r in smtp.received]
    assert ids == ["<run-1.0@tidings>", "<run-1.0@tidings>"]
    assert smtp.received[0].data == smtp.received[1].data


def test_an_unexpected_sender_error_is_retried_and_never_stops_the_batch(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    messages = [make_message(n) for n in (1, 2, 3)]
    queue(store, *messages)
    sender = ScriptedSender({"user2@example.org": KeyError("boom")})

    stats = run(make_worker(store, clock, email=sender).run_once)

    assert stats == DeliveryStats(claimed=3, sent=2, retrying=1)
    row = stored(store, messages[1])
    assert (row.status, row.last_error) == (MessageStatus.pending, "'boom'")
    assert "unexpected error for message run-2:0" in caplog.text


def test_an_outcome_for_a_message_finished_elsewhere_is_dropped(clock: ManualClock) -> None:
    store = MemoryStore()
    message = make_message(1)
    queue(store, message)

    class OtherWorkerWins:
        async def send_email(self, claimed: Message) -> str:
            with store.transaction() as uow:  # another worker records it first
                done = claimed.model_copy(update={"status": MessageStatus.sent, "attempts": 1})
                uow.save_message(done.model_copy(update={"provider_id": "theirs"}))
            return "ours"

    stats = run(make_worker(store, clock, email=OtherWorkerWins()).run_once)

    assert stats == DeliveryStats(claimed=1)
    assert stored(store, message).provider_id == "theirs"
    assert traced(store, message) == []


def test_drain_runs_rounds_until_nothing_is_due(clock: ManualClock) -> None:
    store = MemoryStore()
    queue(store, *(make_message(n) for n in range(1, 6)))
    sender = ScriptedSender({"user4@example.org": TemporaryDeliveryError("451 later")})
    worker = make_worker(store, clock, email=sender, batch=2)

    assert run(lambda: worker.drain(until_idle=False)) == DeliveryStats(claimed=2, sent=2)
    assert run(worker.drain) == DeliveryStats(claimed=3, sent=2, retrying=1)
    assert run(worker.drain) == DeliveryStats()


def test_the_next_batch_is_claimed_and_sent_while_a_slow_send_is_still_in_flight(
    clock: ManualClock, smtp: SmtpTestServer
) -> None:
    # Batches of two, two sends at a time. user1's reply is held until user3's message has
    # arrived: user3 is in the second batch, so it arrives only if that batch is claimed and
    # sent while user1's send is still under way, instead of after the first batch's last
    # send (otherwise the hold runs out and user1 arrives before user3).
    store = MemoryStore()
    queue(store, *(make_message(n) for n in range(1, 5)))
    smtp.hold("user1@example.org", until="user3@example.org")
    sender = smtp_sender(smtp, connections=2)
    worker = make_worker(store, clock, email=sender, batch=2, concurrency=2)

    assert run(worker.drain, sender) == DeliveryStats(claimed=4, sent=4)
    arrived = [r.rcpt_tos[0] for r in smtp.received]
    assert arrived[:2] == ["user2@example.org", "user3@example.org"]
    assert sorted(arrived) == [f"user{n}@example.org" for n in range(1, 5)]


def test_a_drain_told_to_stop_sends_what_it_claimed_and_claims_no_more(
    clock: ManualClock,
) -> None:
    store = MemoryStore()
    messages = [make_message(n) for n in range(1, 6)]
    queue(store, *messages)
    stopping: list[str] = []

    class StopDuringTheFirstSend:
        async def send_email(self, message: Message) -> str:
            stopping.append(message.key)  # the daemon was told to stop meanwhile
            return f"ref-{message.key}"

    worker = make_worker(store, clock, email=StopDuringTheFirstSend(), batch=2, concurrency=1)

    stats = run(lambda: worker.drain(go_on=lambda: not stopping))
    assert stats == DeliveryStats(claimed=2, sent=2)
    assert [stored(store, m).status for m in messages] == [MessageStatus.sent] * 2 + [
        MessageStatus.pending
    ] * 3
