"""Request bodies at the edge: a cap per route, deadlines, and a depth check before any parser.

`BodyLimits` wraps every HTTP request (pure ASGI, below the admission lanes):

- **Cap.** Each route has a body cap: the upload cap plus multipart framing for
  `POST /v1/documents`, the signed-callback cap for `POST /webhooks/llamaparse` and for
  LlamaParse's own callback `POST /webhooks/llamaparse/{job_id}` (whose body, the whole parse
  result, is never read: it is answered, and its connection closed, without reading it), and
  `SMALL_BODY_CAP` (64 KiB) everywhere else. A declared `Content-Length` over it is refused
  before a byte is read; a streamed body is refused the moment it passes it (413 `too_large`).
- **Deadlines.** A body must keep arriving: no gap longer than `body_timeout_s` between two
  pieces, and once that long has passed, at least `min_rate` bytes/s on average. A client that
  stalls or trickles gets 408 `request_timeout` and its connection closed, so it holds a slot
  for seconds, not forever. (Headers have their own deadline in `api/server.py`.)
- **Small bodies are read first.** Outside the two streamed routes, the body (at most 64 KiB)
  is read here, checked for JSON nesting (`domain/json_guard.py`: 400 `malformed_request`
  past 32 levels, before FastAPI or `json.loads` sees it), then handed to the app.

Refusals raised while a route streams its body (`BodyRefused`, an ApiError) reach the app's
ApiError handler; refusals raised here are answered here. Both carry `Connection: close`:
the rest of an unread body must not be taken for the next request.

`CloseAfterUnreadBody` wraps the whole app (outermost) and gives every other answer started
before its request's body was read to the end the same header: a webhook refused on its
headers, a hint callback answered unread, a request refused by the admission lanes. The
server closes such a connection after the answer (`api/server.py`), and a client that was
not told would send its next request on it and get no answer (25 of 300 refused callbacks on
one kept-alive client did).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docingest.api.errors import ApiError, error_response
from docingest.domain.errors import ErrorCode
from docingest.domain.json_guard import MAX_JSON_DEPTH, too_deep

SMALL_BODY_CAP = 64 * 1024
#: multipart framing around the file: an upload body may exceed the file cap by this much
MULTIPART_SLACK = 64 * 1024
UPLOAD_PATH = "/v1/documents"
SIGNED_WEBHOOK_PATH = "/webhooks/llamaparse"
HINT_PREFIX = SIGNED_WEBHOOK_PATH + "/"
_CLOSE = {"Connection": "close"}


class BodyRefused(ApiError):
    """A body over its cap (413) or too slow (408); the connection is closed after it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message, dict(_CLOSE))


def too_large(cap: int) -> BodyRefused:
    return BodyRefused(413, ErrorCode.TOO_LARGE, f"request body exceeds {cap} bytes")


def webhook_body_cap(max_document_chars: int) -> int:
    """A signed callback carries at most one document's markdown; JSON escaping and UTF-8 may
    make it up to three times as many bytes as characters."""
    return 3 * max_document_chars + SMALL_BODY_CAP


class _BodyClock:
    """The deadline of the next body piece: an idle gap, and a minimum average rate."""

    def __init__(self, idle_s: float, min_rate: float) -> None:
        self.idle_s = idle_s
        self.min_rate = min_rate
        self.started = time.monotonic()
        self.received = 0
        self.complete = False  # the last piece came: waiting further is for a disconnect

    def wait_s(self) -> float:
        # after the first idle period the body must average `min_rate` bytes per second
        rate_deadline = self.started + self.idle_s + self.received / self.min_rate
        return max(0.0, min(self.idle_s, rate_deadline - time.monotonic()))


class BodyLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        upload_cap: int,
        webhook_cap: int,
        body_timeout_s: float,
        min_rate: float,
    ) -> None:
        self.app = app
        self.upload_cap = upload_cap + MULTIPART_SLACK
        self.webhook_cap = webhook_cap
        self.body_timeout_s = body_timeout_s
        self.min_rate = min_rate

    def cap_for(self, method: str, path: str) -> tuple[int, bool]:
        """(cap, streamed by the route itself)."""
        if method == "POST" and path == UPLOAD_PATH:
            return self.upload_cap, True
        if method == "POST" and (path == SIGNED_WEBHOOK_PATH or path.startswith(HINT_PREFIX)):
            return self.webhook_cap, True
        return SMALL_BODY_CAP, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, streamed = self.cap_for(scope["method"], scope["path"])
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if _declared_length(scope) > cap:
                raise too_large(cap)
            limited = _limited_receive(receive, cap, _BodyClock(self.body_timeout_s, self.min_rate))
            if not streamed:
                limited = await _read_small_body(limited)
            await self.app(scope, limited, tracking_send)
        except BodyRefused as refusal:
            if started:
                raise
            response = error_response(
                refusal.status, refusal.code, refusal.message, refusal.headers
            )
            await response(scope, receive, send)


class CloseAfterUnreadBody:
    """An answer started before the request's body was read to its end says
    `Connection: close` (see the module's docstring). Pure ASGI, outermost."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def tracking_receive() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                message = _closing(message)
            await send(message)

        await self.app(scope, tracking_receive, closing_send)


def _closing(start: Message) -> Message:
    """`start` (an `http.response.start`) saying `Connection: close`, once."""
    headers = list(start.get("headers", []))
    if any(name.lower() == b"connection" for name, _ in headers):
        return start
    return {**start, "headers": [*headers, (b"connection", b"close")]}


def _has_body(scope: Scope) -> bool:
    return _declared_length(scope) > 0 or any(
        name == b"transfer-encoding" for name, _ in scope["headers"]
    )


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _limited_receive(receive: Receive, cap: int, clock: _BodyClock) -> Receive:
    async def limited() -> Message:
        if clock.complete:
            return await receive()
        try:
            async with asyncio.timeout(clock.wait_s()):
                message = await receive()
        except TimeoutError:
            raise BodyRefused(
                408, "request_timeout", "the request body stopped arriving in time"
            ) from None
        if message["type"] == "http.request":
            clock.received += len(message.get("body", b""))
            clock.complete = not message.get("more_body", False)
            if clock.received > cap:
                raise too_large(cap)
        return message

    return limited


async def _read_small_body(receive: Receive) -> Receive:
    """Read the whole (capped) body now, refuse deep JSON, and replay it to the app."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first: Message = message  # a disconnect: the app sees it as it would have
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            first = {"type": "http.request", "body": b"".join(parts), "more_body": False}
            if too_deep(first["body"]):
                raise BodyRefused(
                    400,
                    ErrorCode.MALFORMED_REQUEST,
                    f"JSON nests deeper than {MAX_JSON_DEPTH} levels",
                )
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()  # after the body: only a disconnect can come
        replayed = True
        return first

    return replay
