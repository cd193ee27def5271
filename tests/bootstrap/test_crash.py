"""Crash: SIGKILL the daemon with runs waiting, messages queued and in flight, and events
arriving; start it again: every acknowledged event is there, no run is stuck, and every due
message reaches the SMTP server exactly once.

"In flight" is made certain, not left to timing: when the kill comes the SMTP port is held by
a server that accepts connections and never answers, so deliveries are stuck mid-attempt (the
rows are `sending`, under a lease). A kill in the middle of an SMTP DATA exchange is the one
case no outbox can make exactly-once (the server may have the message without us knowing);
the Message-ID is stable so receivers can deduplicate it (see `tidings.adapters.smtp`).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections import Counter
from datetime import timedelta

import httpx

from tidings.model.messages import MessageStatus
from tidings.model.runs import RunStatus

from .conftest import REACTION_TIMEOUT_S, Site, message_ids, wait_until


class SilentServer:
    """Accepts connections on a port and never says a word (a hung SMTP relay)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone would leave it listening.
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=REACTION_TIMEOUT_S)
        for conn in self.accepted:
            conn.close()


class Poster:
    """Posts cart events in a thread until stopped; remembers which were acknowledged."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self.acknowledged: list[int] = []
        self.attempted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._post, daemon=True)
        self.thread.start()

    def _post(self) -> None:
        with httpx.Client(base_url=self.url, headers={"api-key": self.api_key}, timeout=5) as c:
            n = 100
            while not self._stop.is_set():
                n += 1
                self.attempted += 1
                body = {
                    "event_name": "cart_updated",
                    "identifiers": {"email_id": f"late{n}@example.com"},
                    "contact_properties": {"FIRSTNAME": f"Late{n}"},
                    "event_properties": {"cart_id": f"C{n}", "total": n, "n": n},
                }
                try:
                    if c.post("/v3/events", json=body).status_code == 204:
                        self.acknowledged.append(n)
                except httpx.TransportError:
                    return  # the daemon is gone

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=REACTION_TIMEOUT_S)


def test_a_killed_daemon_loses_nothing_and_sends_each_due_message_once(site: Site) -> None:
    smtp_url = f"smtp://127.0.0.1:{site.smtp.port}?timeout=300"  # stuck, not timed out
    daemon = site.start(TIDINGS_SMTP_URL=smtp_url)
    for n in range(5):  # delivered before the crash
        daemon.post_event("cart_updated", f"early{n}@example.com", cart_id=f"A{n}", total=1)
    daemon.advance(timedelta(hours=1))
    assert len(site.smtp.received) == 5
    for n in range(5):  # due after the crash
        daemon.post_event("cart_updated", f"mid{n}@example.com", cart_id=f"B{n}", total=1)
    daemon.tick()

    site.smtp.stop()
    silent = SilentServer(site.smtp.port)
    poster = Poster(daemon.url, "e2e-test-api-key-0123456789")
    wait_until(lambda: len(poster.acknowledged) >= 5, "events acknowledged under load")
    site.clock_file.write_text((daemon.now() + timedelta(hours=1)).isoformat(), encoding="utf-8")
    daemon.proc.send_signal(signal.SIGUSR1)
    wait_until(
        lambda: any(m.status is MessageStatus.sending for m in daemon.messages()),
        "deliveries in flight",
    )
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=REACTION_TIMEOUT_S)
    poster.stop()
    silent.close()
    in_flight = [m.key for m in daemon.messages() if m.status is MessageStatus.sending]
    assert in_flight  # the kill really caught deliveries mid-attempt

    site.smtp.start()
    again = site.start(TIDINGS_SMTP_URL=smtp_url)
    for _ in range(24):  # leases run out, retries come due, the late carts' waits end
        runs, messages = again.runs(), again.messages()
        settled = all(r.status is RunStatus.finished for r in runs) and all(
            m.status is MessageStatus.sent for m in messages
        )
        if settled:
            break
        again.advance(timedelta(hours=1))

    stored = {e.properties["n"] for e in again.events() if "n" in e.properties}
    assert set(poster.acknowledged) <= stored
    runs, messages = again.runs(), again.messages()
    assert {r.status for r in runs} == {RunStatus.finished}
    assert {m.status for m in messages} == {MessageStatus.sent}
    counts = Counter(message_ids(site.smtp))
    assert set(counts.values()) == {1}
    assert sorted(counts) == sorted(m.message_id for m in messages)
    # One email per cart: 5 before the crash, 5 due across it, one per late cart that got in.
    late_carts = {r.key for r in runs if r.key.startswith("C")}
    assert len(late_carts) >= len(poster.acknowledged)
    assert sorted(r.rcpt_tos[0] for r in site.smtp.received) == sorted(m.to for m in messages)
    assert len(messages) == 10 + len(late_carts)
    assert set(in_flight) <= {m.key for m in messages}
    assert again.stop() == 0


def test_sigterm_with_a_delivery_stuck_stops_within_the_grace_and_the_lease_brings_it_back(
    site: Site,
) -> None:
    smtp_url = f"smtp://127.0.0.1:{site.smtp.port}?timeout=300"
    daemon = site.start(TIDINGS_SMTP_URL=smtp_url, TIDINGS_SHUTDOWN_GRACE_S="1")
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=1)
    daemon.tick()
    site.smtp.stop()
    silent = SilentServer(site.smtp.port)
    site.clock_file.write_text((daemon.now() + timedelta(hours=1)).isoformat(), encoding="utf-8")
    daemon.proc.send_signal(signal.SIGUSR1)
    wait_until(
        lambda: [m for m in daemon.messages() if m.status is MessageStatus.sending],
        "the delivery in flight",
    )

    code = daemon.stop(signal.SIGTERM)
    silent.close()

    assert code == 0
    assert daemon.logs.find("deliveries still in flight after the grace period")
    [message] = daemon.messages()
    assert message.status is MessageStatus.sending  # leased, not lost, not marked sent
    site.smtp.start()
    again = site.start(TIDINGS_SMTP_URL=smtp_url)
    again.advance(timedelta(minutes=10))  # past the lease
    assert message_ids(site.smtp) == [message.message_id]
    assert [m.status for m in again.messages()] == [MessageStatus.sent]
    assert again.stop() == 0
