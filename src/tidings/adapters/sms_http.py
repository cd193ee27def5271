"""SMS over HTTP, in the shape of Brevo's transactional SMS API.

`POST {base_url}/transactionalSMS/sms` with an `api-key` header and a JSON body
`{sender, recipient, content, type, tag, unicodeEnabled}`; a 2xx answer carries
`{"reference", "messageId"}`. With `base_url` = `https://api.brevo.com/v3` this is Brevo itself.

Answers decide the message's fate: 2xx sent; 429, 5xx and network trouble are temporary;
401, 402 and 403 are about our account (key, credits), not the message, so they are temporary
too and the messages wait for the operator; any other 4xx is permanent, with the body.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from tidings.compile.sms_encoding import is_gsm7
from tidings.errors import PermanentDeliveryError, TemporaryDeliveryError
from tidings.model.messages import Message

SEND_PATH = "/transactionalSMS/sms"
_ACCOUNT_STATUSES = {401, 402, 403}
_PHONE = re.compile(r"\+?[0-9]{6,15}")
_SEPARATORS = re.compile(r"[ .()\-]")
_MAX_BODY = 500  # characters of a provider's answer kept in an error


class HttpSmsSender:
    """An SmsSender that posts each message to a Brevo-compatible HTTP API."""

    def __init__(
        self, base_url: str, api_key: str, *, sender: str, timeout_s: float = 10.0
    ) -> None:
        self._url = base_url.rstrip("/") + SEND_PATH
        self._api_key = api_key
        self._sender = sender
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"HttpSmsSender({self._url!r}, sender={self._sender!r})"

    async def send_sms(self, message: Message) -> str:
        """Post one SMS and return the provider's reference."""
        payload = {
            "sender": message.sender or self._sender,
            "recipient": _recipient(message.to),
            "content": message.text,
            "type": "transactional" if message.transactional else "marketing",
            "tag": message.workflow_id,
            "unicodeEnabled": not is_gsm7(message.text),
        }
        try:
            response = await self._http().post(
                self._url, json=payload, headers={"api-key": self._api_key}
            )
        except httpx.TimeoutException as exc:
            raise TemporaryDeliveryError(f"SMS provider timed out: {_describe(exc)}") from exc
        except httpx.TransportError as exc:
            raise TemporaryDeliveryError(f"SMS provider unreachable: {_describe(exc)}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return _reference(response)
        answer = f"SMS provider answered {status}: {response.text[:_MAX_BODY]}".rstrip(": ")
        if status == 429 or status >= 500 or status in _ACCOUNT_STATUSES:
            raise TemporaryDeliveryError(answer)
        raise PermanentDeliveryError(answer)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> HttpSmsSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _http(self) -> httpx.AsyncClient:
        """The client for the running event loop (connections are reused within one loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client from an earlier, finished loop cannot be closed from here; its pooled
            # sockets were closed with that loop's transports.
            self._client = httpx.AsyncClient(
                timeout=self._timeout_s,
                headers={"accept": "application/json"},
                follow_redirects=False,
            )
            self._loop = loop
        return self._client


def _recipient(number: str) -> str:
    """A mobile number as the API wants it: digits, optionally a leading +."""
    compact = _SEPARATORS.sub("", number)
    if not _PHONE.fullmatch(compact):
        raise PermanentDeliveryError(f"not a mobile number: {number!r}")
    return compact


def _reference(response: httpx.Response) -> str:
    """The provider's reference for a sent SMS; its message id when it gives no reference.

    The SMS is sent once the answer is 2xx, so an odd body must not make us send it again.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("reference", "messageId"):
            if body.get(field) not in (None, ""):
                return str(body[field])
    return f"http-{response.status_code}"


def _describe(exc: httpx.HTTPError) -> str:
    """An httpx error as text; some have an empty message."""
    return str(exc) or type(exc).__name__
