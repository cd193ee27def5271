"""A fake SMS carrier speaking Brevo's transactional SMS API over HTTP on 127.0.0.1.

`POST /v3/transactionalSMS/sms` with an `api-key` header and a JSON body
`{sender, recipient, content, type, tag, ...}` answers `201 {"reference", "messageId", ...}`
like Brevo does; a wrong key gets 401, a missing field 400. Tests can queue failures
(`fail_next(503)`) and read every request it got.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
PATH = "/v3/transactionalSMS/sms"
REQUIRED = ("sender", "recipient", "content")


@dataclass(frozen=True)
class SmsRequest:
    """One request as the carrier saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON, or the raw text when it was not JSON


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when a test sends many SMS at once, and
    # the client's retransmission then takes a second.
    request_queue_size = 128


class FakeSmsCarrier:
    """The carrier: a threaded HTTP server recording requests and sent messages."""

    def __init__(self, *, api_key: str = "carrier-test-key") -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._requests: list[SmsRequest] = []
        self._sent: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """What HttpSmsSender takes: the API root, version included."""
        return f"http://{HOST}:{self.port}/v3"

    @property
    def requests(self) -> list[SmsRequest]:
        """Every request received, in order, answered well or not."""
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The bodies of the messages accepted (answered 201)."""
        with self._lock:
            return list(self._sent)

    def fail_next(self, status: int, body: Any = None, *, times: int = 1) -> None:
        """Answer the next `times` requests with `status` and `body` (JSON unless a str)."""
        if body is None:
            body = {"code": "failure", "message": f"simulated {status}"}
        text = body if isinstance(body, str) else json.dumps(body)
        with self._lock:
            self._failures.extend([(status, text)] * times)

    def start(self) -> FakeSmsCarrier:
        """Listen on a free loopback port (the same one again after a stop)."""
        self._server = _Server((HOST, self.port), self._handler_class())
        self.port = self._server.server_address[1]
        # A short poll so that stop() returns quickly (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; requests then fail to connect."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> FakeSmsCarrier:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer(self, request: SmsRequest) -> tuple[int, dict[str, Any] | str]:
        """What the carrier replies, as (status, JSON body or raw text)."""
        with self._lock:
            self._requests.append(request)
            if self._failures:
                status, text = self._failures.pop(0)
                return status, text
            if request.method != "POST" or request.path != PATH:
                return 404, {"code": "not_found", "message": "Invalid route"}
            if request.headers.get("api-key") != self.api_key:
                return 401, {"code": "unauthorized", "message": "Key not found"}
            body = request.body
            if not isinstance(body, dict) or any(not body.get(f) for f in REQUIRED):
                return 400, {"code": "missing_parameter", "message": "sender/recipient/content"}
            self._sent.append(body)
            number = len(self._sent)
        return 201, {
            "reference": f"ab1cde2fgh3i4jklmno{number}",
            "messageId": 1511882900176220 + number,
            "smsCount": 1,
            "usedCredits": 1.0,
            "remainingCredits": 100.0 - number,
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        carrier = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                request = SmsRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                status, answer = carrier._answer(request)
                data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `requests` instead."""

        return Handler
