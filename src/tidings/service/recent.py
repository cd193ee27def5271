"""What this process stored lately, by content: the sliding duplicate window, in O(1).

An SDK retry carries the same body seconds later, maybe across any time-bucket boundary. Each
stored event's content digest is kept with its receipt time for `window`; a new event whose
digest was stored within the window is a repeat. Entries are added only after their
transaction committed (a rolled-back event must not hide a later, real one), and the index is
bounded: past `max_entries` the oldest are dropped early, and the store's bucket key remains
the backstop (see `tidings.service.ingest`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from tidings.model.events import Event

# `json.dumps` with options builds an encoder per call; this one is built once, same text.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_encoder() -> Callable[[object], str]:
    """`_CANONICAL_JSON.encode` without its two Python frames: the C encoder it ends in, with
    the same options (digested for every event of a request without an explicit key)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the C accelerator
        return _CANONICAL_JSON.encode
    # No circular-reference bookkeeping (a dict shared by every call would not be safe across
    # threads): event content is decoded JSON, which holds no cycle.
    encode = make(
        None,
        _CANONICAL_JSON.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        True,  # sort_keys
        False,
        True,  # allow_nan, as JSONEncoder's default
    )
    return lambda value: "".join(encode(value, 0))


_encode_canonical = _canonical_encoder()


def content_digest(event: Event) -> str:
    """The digest of what makes two events the same (not their ids or receipt time).

    An event without an explicit date took its receipt time as `occurred_at`, so for those the
    time is left out: a retry a few seconds later has the same digest.
    """
    dated = event.occurred_at != event.received_at
    ids = event.identifiers
    content = [
        event.name,
        # One identifier, the usual case, needs no sorting.
        [[kind.value, value] for kind, value in ids.items()]
        if len(ids) == 1
        else sorted((kind.value, value) for kind, value in ids.items()),
        event.properties,
        event.contact_properties,
        event.object,
        event.occurred_at.isoformat() if dated else None,
        event.source,
    ]
    text = _encode_canonical(content)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class RecentEvents:
    """Content digests of events stored within the window; thread-safe, bounded."""

    def __init__(self, window: timedelta, *, max_entries: int = 200_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._times: dict[str, datetime] = {}
        self._order: deque[tuple[datetime, str]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._times)

    def seen(self, digest: str, now: datetime) -> bool:
        """Whether an event with this digest was stored within the window before `now`."""
        with self._lock:
            at = self._times.get(digest)
        return at is not None and now - at <= self.window

    def add(self, entries: Iterable[tuple[str, datetime]]) -> None:
        """Remember committed events (digest, received at); forget what fell out of the window."""
        with self._lock:
            latest: datetime | None = None
            for digest, at in entries:
                self._times[digest] = at
                self._order.append((at, digest))
                latest = at if latest is None or at > latest else latest
            if latest is not None:
                self._evict(latest)

    def _evict(self, now: datetime) -> None:
        while self._order and (
            len(self._order) > self.max_entries or now - self._order[0][0] > self.window
        ):
            at, digest = self._order.popleft()
            if self._times.get(digest) == at:
                del self._times[digest]
