"""Request count and latency by route template, method and status: closed label sets only.

`/metrics` needs no login, so nothing a client chooses may become a label value: the route is
the matched template (or `unmatched`), never the raw path; the method is one of
`METHODS` or `other` (a client can invent method names); the status is the one we answered.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter("docingest_api_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "docingest_api_request_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            method = method_label(scope["method"])
            LATENCY.labels(template, method).observe(time.perf_counter() - started)
            REQUESTS.labels(template, method, str(status)).inc()
