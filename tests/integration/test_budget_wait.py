"""The embedding gate's wait for the shared rate budget, on a real database: a request told to
wait one budget window waits it, however slow asking was."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from docingest.clients.embedders import HashEmbedder
from docingest.domain.rate_budget import WINDOW_S, Grant, Limits
from docingest.store import rate_budget
from docingest.store.db import DictConn, open_pool
from docingest.worker import embed_gate
from docingest.worker.embed_gate import EmbeddingGate

SLOW_ANSWER_S = 0.2  # a reservation's answer coming back late, as from a loaded database


class Slept(Exception):
    """Raised by the test's sleep: the gate chose to wait (and for how long) rather than defer."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


async def _refuse_to_sleep(seconds: float) -> None:
    raise Slept(seconds)


async def test_a_request_after_a_burst_waits_the_window_even_when_asking_was_slow(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RPM 2: two requests go at once, the third is told to wait one window less the few
    milliseconds since. That answer reaching the gate late (a loaded database) once turned
    the wait into a deferred job: counted from the asking, it came to more than a window."""
    pool = await open_pool(dsn)
    try:
        gate = EmbeddingGate(
            pool, HashEmbedder(8), limits=Limits(rpm=2), actor="test", sleep=_refuse_to_sleep
        )
        assert (await gate._reserve([1])).count == 1
        assert (await gate._reserve([1])).count == 1
        reserve = rate_budget.reserve

        async def slow_answer(conn: DictConn, *args: Any, **kwargs: Any) -> Grant:
            grant = await reserve(conn, *args, **kwargs)
            await asyncio.sleep(SLOW_ANSWER_S)
            return grant

        monkeypatch.setattr(embed_gate.rate_budget, "reserve", slow_answer)
        with pytest.raises(Slept) as slept:
            await gate._reserve([1])
        assert WINDOW_S - 5 < slept.value.seconds <= WINDOW_S
    finally:
        await pool.close()
