"""A client of a running daemon's Brevo API, for `tidings import --url`: batches of events.

`post_batch` sends `POST /v3/events/batch` with the `api-key` header and an `Idempotency-Key`
derived from the events' ids, so an import run again (or retried after a timeout) stores each
event once. With `history` it adds `X-Tidings-Mode: history` (stored as already processed: no
workflow applies them) and insists on the daemon's answer saying so too: a daemon or proxy that
dropped the header has let its workflows apply that batch, so the import stops there.

A batch the daemon refuses because of some items (400 with `errors[].eventIndex`) comes back
as those indexes and reasons: the caller reports them and sends the others again.
Overload and server errors (429, 5xx) and dropped connections are retried with backoff, as the
official SDKs do; a bad key or any other refusal raises `ImportRefusedError`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tidings.adapters.http import HISTORY, MODE_HEADER
from tidings.errors import TidingsError

RETRIES = 5
BACKOFF_S = 0.5


class ImportRefusedError(TidingsError):
    """The daemon refused the import as a whole (bad key, unreachable, unexpected answer)."""


@dataclass
class BatchResult:
    """What the daemon did with one batch."""

    accepted: int = 0
    refused: dict[int, str] = field(default_factory=dict)  # index in the batch -> reason


def idempotency_key(ids: Sequence[str]) -> str:
    """A key naming exactly these events, in this order."""
    return "import-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]


class EventsClient:
    """Posts batches of `/v3/events` bodies to a daemon."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        history: bool = False,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v3"):
            self.base_url += "/v3"
        self._client = client or httpx.Client(timeout=60)
        self._owns_client = client is None
        self._headers = {"api-key": api_key}
        self.history = history
        if history:
            self._headers[MODE_HEADER] = HISTORY
        self._sleep = sleep

    def close(self) -> None:
        """Close the HTTP client (when this object made it)."""
        if self._owns_client:
            self._client.close()

    def post_batch(self, bodies: Sequence[dict[str, Any]], ids: Sequence[str]) -> BatchResult:
        """Send one batch (all accepted, or the refused indexes and why; nothing stored then)."""
        headers = {**self._headers, "Idempotency-Key": idempotency_key(ids)}
        response = self._send({"events": list(bodies)}, headers)
        if response.status_code == 202:
            if self.history and response.headers.get(MODE_HEADER, "").lower() != HISTORY:
                raise ImportRefusedError(
                    f"{self.base_url}/events/batch stored a batch without {MODE_HEADER}: history"
                    " (a daemon that predates it, or a proxy dropping the header?): its"
                    " workflows may process those events; import with --trigger, or upgrade"
                )
            return BatchResult(accepted=len(bodies))
        answer = _json(response)
        items = answer.get("errors") if isinstance(answer, dict) else None
        if response.status_code == 400 and isinstance(items, list) and items:
            refused: dict[int, str] = {}
            for item in items:
                for index in item.get("eventIndex") or []:
                    refused.setdefault(int(index), str(item.get("message", "refused")))
            return BatchResult(refused=refused)
        message = answer.get("message") if isinstance(answer, dict) else None
        raise ImportRefusedError(
            f"{self.base_url}/events/batch answered {response.status_code}: "
            f"{message or response.text[:200]}"
        )

    def _send(self, payload: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        """POST with retries on 429, 5xx and connection errors."""
        url = f"{self.base_url}/events/batch"
        response: httpx.Response | None = None
        for attempt in range(RETRIES + 1):
            if attempt:
                self._sleep(_delay(attempt - 1, response))
            try:
                response = self._client.post(url, json=payload, headers=headers)
            except httpx.TransportError as exc:
                response = None
                if attempt == RETRIES:
                    raise ImportRefusedError(f"cannot reach {url}: {exc}") from exc
                continue
            retry = response.status_code == 429 or response.status_code >= 500
            if not retry or attempt == RETRIES:
                return response
        raise AssertionError("unreachable")  # pragma: no cover


def _delay(attempt: int, response: httpx.Response | None) -> float:
    """Retry-After when the daemon gives one, else exponential backoff."""
    if response is not None:
        after = response.headers.get("Retry-After")
        if after is not None and after.isdigit():
            return float(after)
    return float(BACKOFF_S * 2**attempt)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
