"""The LlamaParse client keeps its connection between calls, over a real loopback socket,
and gets past a kept connection that the server closed meanwhile."""

from __future__ import annotations

import asyncio
import json

import pytest

from docingest.clients.llamaparse import LlamaParseClient

BODY = json.dumps({"status": "PENDING"}).encode()


class CountingServer:
    """A minimal HTTP/1.1 server: answers every GET with a pending status, counts the
    connections it accepted, and (`close_after_each`) closes each one after its answer
    without saying so in a header, as a server's idle timeout does."""

    def __init__(self, *, close_after_each: bool) -> None:
        self.close_after_each = close_after_each
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
                )
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("close_after_each", "connections"),
    [(False, 1), (True, 3)],
    ids=["kept-alive connection shared", "closed connection replaced"],
)
async def test_three_calls(close_after_each: bool, connections: int) -> None:
    async with CountingServer(close_after_each=close_after_each) as server:
        client = LlamaParseClient(f"http://127.0.0.1:{server.port}", "k", sleep=_no_wait)
        try:
            for _ in range(3):
                status = await client.status("job-1")
                assert status is not None and status.state == "pending"
        finally:
            await client.aclose()
        assert (server.requests, server.connections) == (3, connections)


async def _no_wait(_: float) -> None:
    return None
