"""Keys on the wire: database and environment keys both work, and no key ever reaches a log
line or an answer, whatever happens to the request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest

from support.daemon import API_KEY, TRACKER_KEY, Daemon, new_api_key
from tidings.adapters.http.app import HttpLimits
from tidings.model.keys import KeyKind

EVENT = {"event_name": "signed_up", "identifiers": {"email_id": "kim@example.org"}}


def test_database_and_environment_keys_are_both_accepted(daemon: Daemon) -> None:
    db_key = new_api_key(daemon)
    db_tracker = new_api_key(daemon, KeyKind.tracker)
    with daemon.client(**{"api-key": db_key}) as client:
        assert client.post("/v3/events", json=EVENT).status_code == 204
    with daemon.client(**{"api-key": API_KEY}) as client:
        assert client.get("/v3/events").json()["count"] == 1
    with daemon.client(**{"api-key": "", "ma-key": db_tracker}) as client:
        response = client.post("/api/v2/trackEvent", json={"email": "a@b.org", "event": "x"})
        assert response.status_code == 204


def test_no_key_in_any_log_line_or_answer(
    make_daemon: Callable[..., Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    daemon = make_daemon(limits=HttpLimits(rate_limit_per_minute=3))
    db_key = new_api_key(daemon)
    wrong = "tdg_api_this-is-a-wrong-but-secret-looking-key"
    answers: list[str] = []
    with daemon.client(**{"api-key": db_key}) as client:
        answers += [client.post("/v3/events", json=EVENT).text for _ in range(4)]  # 4th: 429
        answers.append(client.post("/v3/events", content=b"{oops").text)
    with daemon.client(**{"api-key": wrong}) as client:
        answers.append(client.get("/v3/events").text)
    with daemon.client(**{"api-key": TRACKER_KEY}) as client:
        answers.append(client.get("/v3/events").text)
    with daemon.client(**{"api-key": API_KEY}) as client:
        answers.append(client.post("/v3/events/batch", json={"events": [{}]}).text)
    records = [r.getMessage() for r in caplog.records]
    # The server thread's lines are captured too: access log and our own
    assert any('"POST /v3/events HTTP/1.1" 429' in line for line in records)
    assert any("rate limit reached for key key_" in line for line in records)
    for secret in (db_key, wrong, TRACKER_KEY, API_KEY):
        assert not [line for line in records if secret in line]
        assert not [text for text in answers if secret in text]


def test_failing_wakeup_hook_does_not_fail_the_request(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("engine asleep")

    daemon.app.state.deps.on_ingested = broken
    with daemon.client() as client:
        response = client.post("/v3/events", json=EVENT)
    assert response.status_code == 204
    assert len(daemon.events()) == 1
    assert "on_ingested hook failed" in caplog.text


def test_revocation_takes_effect_within_the_cache_time(daemon: Daemon) -> None:
    secret = new_api_key(daemon)
    [key] = daemon.keys.list()
    with daemon.client(**{"api-key": secret}) as client:
        assert client.get("/v3/events").status_code == 200
        daemon.keys.revoke(key.id, now=daemon.clock.now())
        cached = client.get("/v3/events").status_code
        daemon.clock.advance(timedelta(seconds=5))
        after = client.get("/v3/events").status_code
    assert (cached, after) == (200, 401)
