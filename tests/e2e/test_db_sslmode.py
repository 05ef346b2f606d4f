"""`sslmode` in DOCINGEST_DATABASE_URL reaches libpq unchanged.

The embedded test server listens on a Unix socket only, where libpq ignores `sslmode`; a
loopback TCP relay in front of it gives the real case: a server without TLS reached over
TCP. `sslmode=require` must then stop start-up with one line that does not show the
password, and `sslmode=disable` must work.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from tests.e2e.conftest import run_cli, stack_env

PASSWORD = "Pw-do-not-print-7f3a9c"


class _Relay(socketserver.BaseRequestHandler):
    """Copies bytes between the TCP client and the server's Unix socket until either closes."""

    server: _RelayServer

    def handle(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(self.server.target)
            peers = {self.request: upstream, upstream: self.request}
            with selectors.DefaultSelector() as sel:
                for sock in peers:
                    sel.register(sock, selectors.EVENT_READ)
                while True:
                    for key, _ in sel.select():
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)  # type: ignore[index]


class _RelayServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.target = target


@contextlib.contextmanager
def tcp_relay(dsn: str) -> Iterator[int]:
    params = conninfo_to_dict(dsn)
    target = f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}"
    server = _RelayServer(target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_sslmode_from_the_url_is_honoured(dsn: str, tmp_path: Path) -> None:
    dbname = conninfo_to_dict(dsn)["dbname"]
    with tcp_relay(dsn) as port:
        base = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{dbname}"
        refused = run_cli(stack_env(f"{base}?sslmode=require", tmp_path / "home"), "db", "current")
        assert refused.returncode == 2
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, refused.stderr
        assert "DOCINGEST_DATABASE_URL" in lines[0]
        assert "SSL" in lines[0]
        assert PASSWORD not in refused.stderr + refused.stdout

        works = run_cli(stack_env(f"{base}?sslmode=disable", tmp_path / "home"), "db", "current")
        assert works.returncode == 0, works.stderr
        assert works.stdout.startswith("current: ")
