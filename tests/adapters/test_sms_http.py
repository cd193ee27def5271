"""HttpSmsSender against a fake Brevo-shaped carrier over HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from support.messages import make_sms
from support.sms_carrier import PATH, FakeSmsCarrier
from tidings.adapters.sms_http import HttpSmsSender
from tidings.errors import PermanentDeliveryError, TemporaryDeliveryError
from tidings.model.messages import Message


@pytest.fixture
def carrier() -> Iterator[FakeSmsCarrier]:
    with FakeSmsCarrier() as running:
        yield running


def make_sender(carrier: FakeSmsCarrier, **overrides: Any) -> HttpSmsSender:
    options: dict[str, Any] = {"sender": "Tidings", "timeout_s": 5.0}
    options.update(overrides)
    key = options.pop("api_key", carrier.api_key)
    return HttpSmsSender(carrier.base_url, key, **options)


def send_all(sender: HttpSmsSender, messages: list[Message]) -> list[str | BaseException]:
    """Send in one event loop, close the client, return references or errors in order."""

    async def scenario() -> list[str | BaseException]:
        async with sender:
            return await asyncio.gather(
                *(sender.send_sms(m) for m in messages), return_exceptions=True
            )

    return asyncio.run(scenario())


def test_an_sms_is_posted_in_brevo_shape_with_the_api_key(carrier: FakeSmsCarrier) -> None:
    message = make_sms(1, to="+33 6 12 34 56 71", text="Your code is 1001")

    [reference] = send_all(make_sender(carrier), [message])

    [request] = carrier.requests
    assert (request.method, request.path) == ("POST", PATH)
    assert request.headers["api-key"] == carrier.api_key
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "sender": "Tidings",
        "recipient": "+33612345671",
        "content": "Your code is 1001",
        "type": "transactional",
        "tag": "welcome",
        "unicodeEnabled": False,
    }
    assert reference == "ab1cde2fgh3i4jklmno1"


def test_marketing_unicode_and_a_per_message_sender(carrier: FakeSmsCarrier) -> None:
    message = make_sms(2, transactional=False, sender="Shop", text="Soldes ✨ -50%")

    send_all(make_sender(carrier), [message])

    body = carrier.sent[0]
    assert (body["type"], body["sender"], body["unicodeEnabled"]) == ("marketing", "Shop", True)
    assert body["content"] == "Soldes ✨ -50%"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_are_temporary(carrier: FakeSmsCarrier, status: int) -> None:
    carrier.fail_next(status, {"code": "busy", "message": "try later"})

    [result] = send_all(make_sender(carrier), [make_sms()])

    assert isinstance(result, TemporaryDeliveryError)
    assert (
        str(result) == f'SMS provider answered {status}: {{"code": "busy", "message": "try later"}}'
    )
    assert carrier.sent == []


def test_a_refused_message_is_permanent_with_the_body(carrier: FakeSmsCarrier) -> None:
    carrier.fail_next(400, {"code": "invalid_parameter", "message": "Invalid recipient"})

    [result] = send_all(make_sender(carrier), [make_sms()])

    assert isinstance(result, PermanentDeliveryError)
    assert "400" in str(result)
    assert "Invalid recipient" in str(result)


def test_a_wrong_key_is_temporary_and_never_shown(carrier: FakeSmsCarrier) -> None:
    sender = make_sender(carrier, api_key="wrong-secret-key")

    [result] = send_all(sender, [make_sms()])

    assert isinstance(result, TemporaryDeliveryError)
    assert "401" in str(result)
    assert "wrong-secret-key" not in str(result) + repr(sender)


def test_a_carrier_that_is_down_is_temporary(carrier: FakeSmsCarrier) -> None:
    sender = make_sender(carrier)
    carrier.stop()

    [result] = send_all(sender, [make_sms()])

    assert isinstance(result, TemporaryDeliveryError)
    assert "unreachable" in str(result)


def test_a_carrier_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        base_url = f"http://127.0.0.1:{silent.getsockname()[1]}/v3"

        [result] = send_all(
            HttpSmsSender(base_url, "k", sender="Tidings", timeout_s=0.2), [make_sms()]
        )

    assert isinstance(result, TemporaryDeliveryError)
    assert "timed out" in str(result)


@pytest.mark.parametrize("to", ["12345", "+33 6 12 34 56 7x", "0612\n345678", "", "+" + "1" * 16])
def test_a_number_that_is_not_a_mobile_number_is_refused_before_sending(
    carrier: FakeSmsCarrier, to: str
) -> None:
    [result] = send_all(make_sender(carrier), [make_sms(to=to)])

    assert isinstance(result, PermanentDeliveryError)
    assert "not a mobile number" in str(result)
    assert carrier.requests == []


@pytest.mark.parametrize(
    ("body", "reference"),
    [
        ({"messageId": 42}, "42"),
        ("accepted", "http-201"),
        ({"reference": "", "messageId": 7}, "7"),
    ],
)
def test_a_2xx_without_a_reference_still_counts_as_sent(
    carrier: FakeSmsCarrier, body: Any, reference: str
) -> None:
    carrier.fail_next(201, body)  # "fail" only in the sense of a scripted answer

    assert send_all(make_sender(carrier), [make_sms()]) == [reference]


def test_many_messages_each_reach_the_carrier_once(carrier: FakeSmsCarrier) -> None:
    messages = [make_sms(n) for n in range(1, 9)]

    references = send_all(make_sender(carrier), messages)

    assert len(set(references)) == 8
    assert sorted(b["content"] for b in carrier.sent) == sorted(m.text for m in messages)
