"""The worker's proof of life: one database session holding its advisory lock
(`store/liveness.py`) for as long as the process runs.

The session is a connection of its own, outside the pool, idle between checks. Whenever it
is lost (PostgreSQL restarted, the connection was cut) it is opened again and the same lock
key is taken back; until then the worker claims nothing, so it never holds a job that
others would rightly consider orphaned. TCP keepalives run on both ends: the server ends
the session of a worker whose host has vanished within about `KEEPALIVE_LOSS_S`, and the
worker notices a vanished server just as fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from docingest.store import liveness
from docingest.store.db import DictConn

log = logging.getLogger(__name__)

KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 3
KEEPALIVE_LOSS_S = KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT
# Unacknowledged data is given up on after this long (TCP_USER_TIMEOUT), on both ends.
USER_TIMEOUT_MS = KEEPALIVE_LOSS_S * 1000

# libpq connection parameters (client end); ignored on Unix sockets.
CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_S,
    "keepalives_interval": KEEPALIVE_INTERVAL_S,
    "keepalives_count": KEEPALIVE_COUNT,
    "tcp_user_timeout": USER_TIMEOUT_MS,
    "connect_timeout": 10,
}
# The same on the server's end of this session (user-settable GUCs; no-ops on Unix sockets).
SERVER_KEEPALIVES = (
    f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S};"
    f" SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S};"
    f" SET tcp_keepalives_count = {KEEPALIVE_COUNT};"
    f" SET tcp_user_timeout = {USER_TIMEOUT_MS}"
)


class WorkerSession:
    """Keeps `worker_id` registered and its lock held; `alive` is set while it is."""

    def __init__(
        self,
        dsn: str,
        worker_id: str,
        *,
        on_alive: Callable[[], None] = lambda: None,
        check_interval_s: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.worker_id = worker_id
        self.on_alive = on_alive
        self.check_interval_s = check_interval_s
        self.alive = asyncio.Event()
        self.lock_key: int | None = None
        self._conn: DictConn | None = None

    async def keep(self) -> None:
        """Run until cancelled: (re)open the session, take the lock, check it every second."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    make_conninfo(self.dsn, **CLIENT_KEEPALIVES),
                    autocommit=True,
                    row_factory=dict_row,
                ) as conn:
                    await conn.execute(SERVER_KEEPALIVES)
                    self.lock_key = await liveness.register(conn, self.worker_id, self.lock_key)
                    self._conn = conn
                    self.alive.set()
                    self.on_alive()
                    log.info(
                        "worker session registered",
                        extra={"action": "worker_session", "worker_id": self.worker_id},
                    )
                    while True:
                        await asyncio.sleep(self.check_interval_s)
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except psycopg.Error:
                log.warning(
                    "worker session lost; reconnecting",
                    extra={"action": "worker_session_lost", "worker_id": self.worker_id},
                )
            finally:
                self.alive.clear()
                self._conn = None
            await asyncio.sleep(self.check_interval_s)

    async def close(self) -> None:
        """Unregister on a clean exit (the caller then cancels `keep`, which closes the
        session and so drops the lock)."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            await liveness.unregister(conn, self.worker_id)
