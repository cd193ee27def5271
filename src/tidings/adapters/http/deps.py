"""What the HTTP routes are given (`HttpDeps`) and the request steps they share: key check,
rate limit, reading the body, the ingestion mode, and telling the engine that events arrived."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

from tidings.adapters.http import HISTORY, LIVE, MODE_HEADER
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.http.errors import ApiProblemError
from tidings.adapters.http.rate_limit import RateLimiter
from tidings.model.keys import ApiKey, KeyKind
from tidings.ports import Clock, Store
from tidings.service.ingest import IngestService, Outcome

log = logging.getLogger("tidings.http")


@dataclass(frozen=True)
class HttpLimits:
    """Request limits (docs/ingestion.md); event-level limits live in the ingest service."""

    max_body_bytes: int = 1_048_576
    max_batch_body_bytes: int = 10_485_760
    rate_limit_per_minute: int | None = None


@dataclass
class HttpDeps:
    """Everything the HTTP adapter needs; bootstrap builds it from Settings."""

    store: Store
    clock: Clock
    ingest: IngestService
    keys: KeyChecker
    limits: HttpLimits = field(default_factory=HttpLimits)
    # Called after a commit that stored new events (e.g. to wake the engine). Must be cheap
    # and thread-safe; its failures are logged, never turned into an error for the client.
    on_ingested: Callable[[], None] | None = None
    rate_limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        if self.rate_limiter is None and self.limits.rate_limit_per_minute:
            self.rate_limiter = RateLimiter(self.limits.rate_limit_per_minute, self.clock)


api_key_header = APIKeyHeader(
    name="api-key",
    scheme_name="api-key",
    description="An API key (`tidings keys create --kind api`, or TIDINGS_API_KEYS).",
    auto_error=False,
)
ma_key_header = APIKeyHeader(
    name="ma-key",
    scheme_name="ma-key",
    description="A tracker key (`tidings keys create --kind tracker`); may only add events.",
    auto_error=False,
)


def deps_of(request: Request) -> HttpDeps:
    """The HttpDeps of the app serving this request."""
    deps: HttpDeps = request.app.state.deps
    return deps


def authorise(
    request: Request, presented: str | None, accepted: Sequence[KeyKind], header: str
) -> ApiKey:
    """The calling key, or 401; then the key's rate limit, or 429 (blocking: may query the
    database; async routes use `authorise_async`)."""
    deps = deps_of(request)
    if not presented:
        raise ApiProblemError(401, "unauthorized", f"{header} header is missing")
    key = deps.keys.check(presented, accepted)
    return _remember(request, *admit(deps, key, header))


async def authorise_async(
    request: Request, presented: str | None, accepted: Sequence[KeyKind], header: str
) -> ApiKey:
    """`authorise` for the event loop (see `authorised_key`)."""
    return _remember(request, *await authorised_key(deps_of(request), presented, accepted, header))


async def authorised_key(
    deps: HttpDeps, presented: str | None, accepted: Sequence[KeyKind], header: str
) -> tuple[ApiKey, dict[str, str]]:
    """The calling key and its rate-limit headers, or 401 / 429. Environment keys and cached
    lookups are decided here, only a database lookup goes to a worker thread (a thread hop
    costs more than the check)."""
    if not presented:
        raise ApiProblemError(401, "unauthorized", f"{header} header is missing")
    decided, key = deps.keys.check_without_io(presented, accepted)
    if not decided:
        key = await run_in_threadpool(deps.keys.check, presented, accepted)
    return admit(deps, key, header)


def admit(deps: HttpDeps, key: ApiKey | None, header: str) -> tuple[ApiKey, dict[str, str]]:
    """The key, if it was found, and its rate-limit headers (empty without a limit); else
    401, or 429 when the key's rate limit is reached."""
    if key is None:
        # Never echo the presented value: it may be a real key pasted in the wrong place.
        raise ApiProblemError(401, "unauthorized", f"Key not found: the {header} is not valid here")
    if deps.rate_limiter is None:
        return key, {}
    allowance = deps.rate_limiter.take(key.id)
    if not allowance.allowed:
        log.info("rate limit reached for key %s", key.id)
        raise ApiProblemError(
            429,
            "too_many_requests",
            f"rate limit of {allowance.limit} requests per minute reached;"
            f" retry in {allowance.retry_after_s}s",
            headers=allowance.headers(),
        )
    return key, allowance.headers()


def _remember(request: Request, key: ApiKey, headers: dict[str, str]) -> ApiKey:
    request.state.key_id = key.id
    if headers:
        request.state.rate_headers = headers
    return key


def history_mode(value: str | None) -> bool:
    """Whether a request's `X-Tidings-Mode` asks for history (absent or `live`: Brevo's
    behaviour; any other value is refused, so a typo never triggers workflows by surprise)."""
    if value is None:
        return False
    mode = value.strip().lower()
    if mode not in {HISTORY, LIVE}:
        raise ApiProblemError(
            400, "invalid_parameter", f"{MODE_HEADER}: expected '{HISTORY}' or '{LIVE}'"
        )
    return mode == HISTORY


def rate_headers(request: Request) -> dict[str, str]:
    """The key's rate-limit headers for a successful answer (empty when there is no limit)."""
    headers: dict[str, str] = getattr(request.state, "rate_headers", {})
    return dict(headers)


def ingested(deps: HttpDeps, outcome: Outcome) -> None:
    """Tell the engine new events are there (only when something new was stored)."""
    if outcome.stored and deps.on_ingested is not None:
        try:
            deps.on_ingested()
        except Exception:  # the events are committed; a failed wake-up must not fail the request
            log.exception("on_ingested hook failed")
