"""Who is calling: `api-key` on `/v3`, `ma-key` on the tracker endpoints, checked by hash.

Keys come from the database (`tidings keys create`, stored as SHA-256) and/or from
`TIDINGS_API_KEYS` / `TIDINGS_TRACKER_KEYS`. Only hashes are kept in memory; environment keys
are compared with `hmac.compare_digest` against every candidate (no early exit), and database
keys are looked up by hash, which says nothing about the secret. Tracker keys are public (they
sit in web pages), so they may only add events: `/v3` refuses them. Nothing here ever logs or
echoes a key; log lines name keys by id.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from tidings.model.keys import ApiKey, KeyKind, hash_key
from tidings.ports import Clock

_CACHE_LIMIT = 4096


class KeyLookup(Protocol):
    """Where database keys are found (the SQL key store)."""

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The active key with this hash, if any."""
        ...


class KeyChecker:
    """Says which key a presented secret is, if it is a valid one of an accepted kind."""

    def __init__(
        self,
        *,
        api_keys: Sequence[str] = (),
        tracker_keys: Sequence[str] = (),
        lookup: KeyLookup | None = None,
        clock: Clock | None = None,
        cache_for: timedelta = timedelta(seconds=5),
    ) -> None:
        self._env: list[tuple[str, ApiKey]] = []
        for kind, secrets in ((KeyKind.api, api_keys), (KeyKind.tracker, tracker_keys)):
            for secret in secrets:
                digest = hash_key(secret)
                key = ApiKey(id=f"env-{kind.value}-{digest[:8]}", kind=kind, name="environment")
                self._env.append((digest, key))
        self._lookup = lookup
        self._clock = clock
        self._cache_for = cache_for
        # hash -> (key or None, expiry): a revoked key stops working within `cache_for`.
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether any key can ever be accepted (else every request is refused)."""
        return bool(self._env) or self._lookup is not None

    def check(self, presented: str | None, accepted: Sequence[KeyKind]) -> ApiKey | None:
        """The key for this secret if it is valid and of an accepted kind, else None."""
        if not presented:
            return None
        digest = hash_key(presented)
        key = self._from_env(digest) or self._from_lookup(digest)
        if key is None or key.kind not in accepted:
            return None
        return key

    def check_without_io(
        self, presented: str, accepted: Sequence[KeyKind]
    ) -> tuple[bool, ApiKey | None]:
        """`(True, key or None)` when environment keys or the cache decide; `(False, None)`
        when only a database lookup can (then call `check` off the event loop)."""
        digest = hash_key(presented)
        key = self._from_env(digest)
        if key is None and self._lookup is not None:
            cached = self._cached(digest)
            if cached is None:
                return False, None
            key = cached[0]
        if key is None or key.kind not in accepted:
            return True, None
        return True, key

    def _cached(self, digest: str) -> tuple[ApiKey | None] | None:
        if self._clock is None:
            return None
        now = self._clock.now().timestamp()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return (cached[0],)
        return None

    def _from_env(self, digest: str) -> ApiKey | None:
        found: ApiKey | None = None
        for candidate, key in self._env:
            # No early exit: the time taken does not depend on which key (if any) matched.
            if hmac.compare_digest(candidate, digest):
                found = key
        return found

    def _from_lookup(self, digest: str) -> ApiKey | None:
        if self._lookup is None:
            return None
        cached = self._cached(digest)
        if cached is not None:
            return cached[0]
        now = self._clock.now().timestamp() if self._clock is not None else None
        key = self._lookup.find_key(digest)
        if now is not None:
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()  # bounded: a flood of wrong keys cannot grow memory
                self._cache[digest] = (key, now + self._cache_for.total_seconds())
        return key
