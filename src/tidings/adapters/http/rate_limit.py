"""An optional per-key rate limit: a token bucket per key, refilled from the injected Clock.

`rate_limit_per_minute = N` lets each key burst to N requests and then N per minute. Over the
limit the answer is 429 with `Retry-After` and Brevo's `x-sib-ratelimit-limit`,
`x-sib-ratelimit-remaining` and `x-sib-ratelimit-reset` headers (which the SDKs honour).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from tidings.ports import Clock


@dataclass(frozen=True)
class Allowance:
    """The verdict for one request, and the headers that describe the key's budget."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """Brevo's rate-limit headers (and Retry-After when refused)."""
        headers = {
            "x-sib-ratelimit-limit": str(self.limit),
            "x-sib-ratelimit-remaining": str(self.remaining),
            "x-sib-ratelimit-reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    """Token buckets keyed by api-key id; thread-safe; time from the Clock only."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        if per_minute <= 0:
            raise ValueError("rate_limit_per_minute must be positive")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key_id: str) -> Allowance:
        """Spend one token of this key's bucket if there is one."""
        now = self._clock.now().timestamp()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + max(0.0, now - at) * self._rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key_id] = (tokens, now)
        missing = self.per_minute - tokens
        return Allowance(
            allowed=allowed,
            limit=self.per_minute,
            remaining=int(tokens),
            reset_s=math.ceil(missing / self._rate) if missing > 0 else 0,
            retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / self._rate)),
        )
