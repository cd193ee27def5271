"""SMTP outage: the server is down for a while, then back on the same port.

Messages stay in the outbox with a growing backoff while the server is away, none is lost and,
once it is back, each reaches it exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tidings.model.messages import MessageStatus

from .conftest import Site, message_ids

CONTACTS = [f"user{n}@example.com" for n in range(6)]


def test_messages_wait_out_an_smtp_outage_and_are_each_delivered_once(site: Site) -> None:
    daemon = site.start()
    for n, email in enumerate(CONTACTS):
        assert daemon.post_event("cart_updated", email, cart_id=f"K{n}", total=n + 1).is_success
    daemon.tick()
    site.smtp.stop()  # the relay goes away before anything is due

    daemon.advance(timedelta(hours=1))
    first = {m.key: m for m in daemon.messages()}
    daemon.advance(timedelta(minutes=30))
    later = {m.key: m for m in daemon.messages()}

    assert len(first) == len(CONTACTS)
    assert {m.status for m in first.values()} == {MessageStatus.pending}
    assert all(m.attempts >= 1 and m.last_error for m in first.values())
    assert all(
        m.next_attempt_at and m.next_attempt_at > daemon.now() - timedelta(minutes=30)
        for m in first.values()
    )
    assert sum(m.attempts for m in later.values()) > sum(m.attempts for m in first.values())
    assert daemon.metric("tidings_messages_deferred_total", channel="email") >= len(CONTACTS)
    assert site.smtp.received == []

    site.smtp.start()  # back, on the same port
    for _ in range(48):  # at most two days of retries, half an hour at a time
        if len(site.smtp.received) >= len(CONTACTS):
            break
        daemon.advance(timedelta(hours=1))

    counts = Counter(message_ids(site.smtp))
    assert sorted(counts) == sorted(m.message_id for m in daemon.messages())
    assert set(counts.values()) == {1}
    assert sorted(r.rcpt_tos[0] for r in site.smtp.received) == sorted(CONTACTS)
    assert {m.status for m in daemon.messages()} == {MessageStatus.sent}
    assert daemon.metric("tidings_messages_sent_total", channel="email") == len(CONTACTS)
    assert daemon.stop() == 0


def test_past_the_configured_max_age_a_message_fails_with_the_reason(site: Site) -> None:
    daemon = site.start(TIDINGS_DELIVERY_MAX_AGE_S="3600")
    assert daemon.post_event("cart_updated", CONTACTS[0], cart_id="K0", total=1).is_success
    daemon.tick()
    site.smtp.stop()

    daemon.advance(timedelta(hours=1))  # the email is due, and the relay is away
    daemon.advance(timedelta(minutes=59))
    [waiting] = daemon.messages()
    daemon.advance(timedelta(minutes=1))  # an hour after it was due
    [failed] = daemon.messages()

    assert waiting.status is MessageStatus.pending
    assert failed.status is MessageStatus.failed
    assert failed.last_error is not None
    assert failed.last_error.startswith(f"gave up after {failed.attempts} attempts over 1h")
    assert "(delivery max age 1h): " in failed.last_error
    assert daemon.metric("tidings_messages_failed_total", channel="email") == 1
    assert daemon.stop() == 0
