"""How the fake LlamaParse parses: docingest's own PDF -> markdown conversion in a few
long-lived, memory-limited processes.

The worker's local parser forks one sandboxed child per document (`clients/local_parser`),
which is right for a service that must survive any input, but even a fork costs a few
milliseconds and a fresh address space per document. The fake runs on the same cores as the stack it serves in
`docingest validate`, so it keeps its parser processes instead: the real LlamaParse does
not spend our CPU, and the fake should spend as little of it as it can. A process that dies
(a crash in PDFium) is replaced, and the document gets the error a crashed parse gets.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from docingest.clients.parse_child import apply_limits, convert
from docingest.config import WorkLimits
from docingest.domain.errors import ErrorCode

MEMORY_MB = 1536  # as the worker's parser (DOCINGEST_PARSE_MEMORY_MB default)
MAX_PAGES = 1000
TIMEOUT_S = 120.0  # a parse this long gets the parse_limit error and a fresh pool
# No max_tasks_per_child: on Python 3.11 a pool that retires its processes can hang forever
# (CPython gh-115634); a validate run saw every parse stop after the first retirement.


def _start() -> None:
    apply_limits(memory_mb=MEMORY_MB, cpu_seconds=None)


def _convert(data: bytes) -> dict[str, Any]:
    """The worker's parser with its default work limits (pages, characters)."""
    return convert(
        data,
        max_pages=MAX_PAGES,
        max_page_chars=WorkLimits.max_page_chars,
        max_document_chars=WorkLimits.max_document_chars,
    )


class ParsePool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
        )

    async def parse(self, data: bytes) -> dict[str, Any]:
        """`{"ok": True, "markdown": ...}` or `{"ok": False, "code": ...}`."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                return await loop.run_in_executor(self._pool, _convert, data)
        except (BrokenProcessPool, TimeoutError):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return {"ok": False, "code": ErrorCode.PARSE_LIMIT.value, "message": "parse failed"}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
