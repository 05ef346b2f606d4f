"""How the fake LlamaParse parses: docingest's own PDF -> markdown conversion in a few
long-lived, memory-limited processes.

The worker's local parser starts one sandboxed child per document (`clients/local_parser`),
which is right for a service that must survive any input, but a new Python process per
document costs ~100 ms of CPU. The fake runs on the same cores as the stack it serves in
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
from docingest.domain.errors import ErrorCode

MEMORY_MB = 1536  # as the worker's parser (DOCINGEST_PARSE_MEMORY_MB default)
MAX_PAGES = 1000
TASKS_PER_PROCESS = 100  # then a fresh process: bounds what one process can accumulate


def _start() -> None:
    apply_limits(memory_mb=MEMORY_MB, cpu_seconds=None)


class ParsePool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            max_tasks_per_child=TASKS_PER_PROCESS,
        )

    async def parse(self, data: bytes) -> dict[str, Any]:
        """`{"ok": True, "markdown": ...}` or `{"ok": False, "code": ...}`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, convert, data, MAX_PAGES)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return {"ok": False, "code": ErrorCode.PARSE_LIMIT.value, "message": "parser died"}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
