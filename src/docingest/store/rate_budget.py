"""The shared embedding rate budget in Postgres (`rate_budgets`): one short transaction per
reservation, the arithmetic in `domain/rate_budget.py`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from docingest.domain import rate_budget
from docingest.domain.rate_budget import Grant, Limits, Window
from docingest.store.db import DictConn
from docingest.store.locked_rows import lock_row

T = TypeVar("T")


async def _change(conn: DictConn, key: str, fn: Callable[[Window, float], tuple[Window, T]]) -> T:
    async with conn.transaction():
        row, now = await lock_row(conn, "rate_budgets", "budget_key", key)
        before = Window(
            tuple(row["sent_at"]), tuple(row["sent_tokens"]), float(row["blocked_until"])
        )
        after, out = fn(before, now)
        if after != before:
            await conn.execute(
                "UPDATE docingest.rate_budgets SET sent_at = %s, sent_tokens = %s,"
                " blocked_until = %s, updated_at = now() WHERE budget_key = %s",
                (list(after.sent_at), list(after.sent_tokens), after.blocked_until, key),
            )
    return out


async def reserve(conn: DictConn, key: str, counts: Sequence[int], limits: Limits) -> Grant:
    """Reserve one request for the longest useful prefix of `counts`, or learn how long to wait."""
    return await _change(conn, key, lambda w, now: rate_budget.reserve(w, now, counts, limits))


async def hold(conn: DictConn, key: str, seconds: float) -> None:
    """Hold every worker back for `seconds` (the provider said so)."""
    await _change(conn, key, lambda w, now: (rate_budget.hold(w, now, seconds), None))
