"""Admission lanes: who may hold how many of the API's request slots (pure ASGI, outermost
but for metrics and HSTS).

A request is admitted into one lane before routing, authentication or any database work:

- **signed lane** (a bearer token that verifies, keyed by user; or a parse callback whose URL
  token verifies, keyed by job): at most `user_inflight` requests of one key in flight; more
  answer 429 `too_many_requests`. One user's stalled uploads or floods hold only that user's
  slots. A parser calling back for many jobs at once is not rate-limited as one anonymous
  address: a burst of genuine callbacks once waited out 429s, seconds per document.
- **anonymous lane** (no credential that verifies: signed webhooks, probes, refusals):
  per source address a token bucket (`anon_rate`/s, bursts of `anon_burst`; 429
  `rate_limited`) and at most `anon_inflight_per_address` in flight (429
  `too_many_requests`); all addresses together at most `anon_inflight` (503 `overloaded`), so
  unauthenticated clients can never take the slots signed-in users need.
- **global**: at most `max_inflight` requests in flight (503 `overloaded`).

`/healthz`, `/readyz` and `/metrics` are never refused here (an orchestrator must see an
overloaded API); their database reads are cached for a second (api/routes/health.py).
Every refusal carries `Retry-After`, is counted in `docingest_api_shed_total{reason}`, and an
anonymous one is noted for the aggregated audit row (api/refusals.py). Token buckets live in
a bounded LRU map, so a flood of source addresses costs bounded memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from docingest.api.errors import ApiError, error_response
from docingest.api.refusals import RefusalLog
from docingest.api.shedding import INFLIGHT, OVERLOADED_RETRY_AFTER_S, SHED
from docingest.config import EdgeLimits

NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_TRACKED_ADDRESSES = 50_000

#: the request's signed-lane key ("user:<id>", "callback:<job id>"), or None when it carries
#: no credential that verifies (anonymous)
Identify = Callable[[Scope], str | None]


class TokenBuckets:
    """One token bucket per key (`rate` tokens/s, at most `burst`), least recently used keys
    forgotten beyond `max_keys` (a forgotten key starts again with a full bucket)."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_TRACKED_ADDRESSES) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token: 0.0 when admitted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, stamp = self._state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._state[key] = (tokens, now)
        if len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return wait


class _Counts:
    """In-flight requests per key; a key leaves the map at zero (bounded by what is in flight)."""

    def __init__(self) -> None:
        self._n: dict[str, int] = {}

    def get(self, key: str) -> int:
        return self._n.get(key, 0)

    def add(self, key: str, delta: int) -> None:
        n = self._n.get(key, 0) + delta
        if n > 0:
            self._n[key] = n
        else:
            self._n.pop(key, None)


class Lanes:
    """The lanes' counters and rules, shared by the middleware and /readyz."""

    def __init__(self, *, max_inflight: int, limits: EdgeLimits) -> None:
        self.max_inflight = max_inflight
        self.limits = limits
        self.buckets = TokenBuckets(limits.anon_rate, limits.anon_burst)
        self.inflight = 0  # one event loop: no lock needed
        self.anon_inflight = 0
        self.per_key = _Counts()

    def admit(self, key: str, *, anonymous: bool) -> None:
        """Raise the refusal (ApiError) if the request may not be served now."""
        if self.inflight >= self.max_inflight:
            raise _refusal(503, "overloaded", "too many requests in flight; retry later")
        if not anonymous:
            if self.per_key.get(key) >= self.limits.user_inflight:
                raise _refusal(429, "too_many_requests", "too many of your requests in flight")
            return
        wait = self.buckets.take(key)
        if wait > 0:
            raise _refusal(429, "rate_limited", "too many requests from this address", wait)
        if self.per_key.get(key) >= self.limits.anon_inflight_per_address:
            raise _refusal(429, "too_many_requests", "too many requests in flight from here")
        if self.anon_inflight >= self.limits.anon_inflight:
            raise _refusal(503, "overloaded", "too many unauthenticated requests; retry later")

    def hold(self, key: str, *, anonymous: bool, delta: int) -> None:
        self.inflight += delta
        self.anon_inflight += delta if anonymous else 0
        self.per_key.add(key, delta)
        INFLIGHT.inc(delta)

    @property
    def saturated(self) -> bool:
        """No slot is free: /readyz says so (the orchestrator should send traffic elsewhere)."""
        return self.inflight >= self.max_inflight


class Admission:
    def __init__(
        self, app: ASGIApp, *, lanes: Lanes, identify: Identify, refusals: RefusalLog
    ) -> None:
        self.app = app
        self.lanes = lanes
        self.identify = identify
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        signed = self.identify(scope)
        anonymous = signed is None
        key = signed or f"addr:{_address(scope)}"
        try:
            self.lanes.admit(key, anonymous=anonymous)
        except ApiError as refusal:
            SHED.labels(reason=refusal.code).inc()
            if anonymous:
                self.refusals.note(_address(scope), refusal.status, refusal.code)
            response = error_response(
                refusal.status, refusal.code, refusal.message, refusal.headers
            )
            await response(scope, receive, send)
            return
        self.lanes.hold(key, anonymous=anonymous, delta=+1)
        try:
            await self.app(scope, receive, send)
        finally:
            self.lanes.hold(key, anonymous=anonymous, delta=-1)


def _refusal(status: int, code: str, message: str, wait_s: float = 0.0) -> ApiError:
    retry_after = max(OVERLOADED_RETRY_AFTER_S, math.ceil(wait_s))
    return ApiError(status, code, message, {"Retry-After": str(retry_after)})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
