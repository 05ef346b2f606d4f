"""uvicorn with connection-level deadlines: `docingest api` serves through this.

uvicorn reads headers without a deadline (a client may send half a request line and wait
forever) and has no per-address connection limit (`limit_concurrency` answers 503 to
everyone). `GuardedH11Protocol` adds both:

- **Header deadline:** from the moment a connection opens, or a new request's first byte
  arrives on a kept-alive one, its request line and headers must be complete within
  `header_timeout_s`; otherwise the connection is closed. Bodies have their own deadlines
  (api/edge.py); idle kept-alive connections uvicorn's `timeout_keep_alive` (5 s).
- **Connections per address:** a client address may hold at most `connections_per_address`
  open connections; more are closed at once.
- **An answer before the body ends the connection:** a request refused (or answered) before
  its body was read leaves the rest of that body unread; the connection is closed, instead of
  h11 swallowing whatever the client keeps trickling in.

Proxy headers (`X-Forwarded-For`) are believed only from `DOCINGEST_API_TRUSTED_PROXIES`
(unset: from nobody), so the per-address limits key on an address a client cannot choose.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from docingest.config import EdgeLimits


class GuardedH11Protocol(H11Protocol):
    header_timeout_s: ClassVar[float] = 10.0
    connections_per_address: ClassVar[int] = 256
    open_per_address: ClassVar[Counter[str]] = Counter()  # one per server: `protocol_for`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._address: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else None
        if self._address is not None:
            self.open_per_address[self._address] += 1
            if self.open_per_address[self._address] > self.connections_per_address:
                transport.close()
                return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        if self._address is not None:
            self.open_per_address[self._address] -= 1
            if self.open_per_address[self._address] <= 0:
                del self.open_per_address[self._address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._header_deadline is None:
            self._arm_header_deadline()  # a new request begins on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()  # its headers are complete

    def on_response_complete(self) -> None:
        unread_body = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if unread_body and not self.transport.is_closing():
            self.transport.close()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol_for(limits: EdgeLimits) -> type[GuardedH11Protocol]:
    """A protocol class carrying this server's limits and its own per-address counts."""
    return type(
        "DocingestH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout_s": float(limits.header_timeout_s),
            "connections_per_address": limits.connections_per_address,
            "open_per_address": Counter(),
        },
    )


def serve(
    app: FastAPI,
    limits: EdgeLimits,
    *,
    host: str,
    port: int,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol_for(limits),
        log_level="warning",
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        proxy_headers=limits.trusted_proxies is not None,
        forwarded_allow_ips=limits.trusted_proxies or "",
    )
