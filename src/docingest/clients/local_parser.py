"""Local PDF parser: PDFium in a short-lived, resource-limited child process.

The worker never loads a PDF into its own process. Each parse asks the parse server
(``parse_server``, one per worker process, started on first use and again if it dies) to fork
a child for this one document, streams the bytes to it and reads one JSON answer back, so that

- CPU-heavy parsing never blocks the caller's event loop;
- a PDFium crash, an out-of-memory kill or a runaway page cannot take the worker down;
- memory (RLIMIT_AS) and CPU time (RLIMIT_CPU) are capped per document, and the
  wall-clock timeout kills the child (the server reaps it and reports how it ended).

Forking from a server that has already imported PDFium instead of starting an interpreter
per document saves ~150 ms of CPU per document (docs/decisions.md).

Outcomes: ``ParsedPdf``; ``ParseError`` with the child's code; ``ParseError(PARSE_LIMIT)``
on timeout, death by signal or oversized output; ``ParseError(CORRUPT_PDF)`` when the
child's answer is not the expected JSON; ``TransientError(PARSER_UNAVAILABLE)`` when the
server cannot be started or reached, dies, or the child exits with an error before
answering (an environment problem, not the document's fault).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Final, TypeGuard

from docingest.clients.parse_server_link import START_TIMEOUT_S, ChildRun, shared_server
from docingest.clients.pdf_markdown import ParsedPdf
from docingest.config import WorkLimits
from docingest.domain.errors import ErrorCode, ParseError, TransientError

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "PARSER_NAME",
    "PARSER_VERSION",
    "LocalParser",
    "ParsedPdf",
    "parse_pdf",
]

logger = logging.getLogger(__name__)

PARSER_NAME: Final = "local-pdfium"


def _pypdfium2_version() -> str:
    try:
        return metadata.version("pypdfium2")
    except metadata.PackageNotFoundError:  # pragma: no cover - it is a hard dependency
        return "unknown"


#: bump MARKDOWN_RULES when pdf_markdown's output changes for the same PDF
MARKDOWN_RULES: Final = "md1"
PARSER_VERSION: Final = f"{_pypdfium2_version()}+{MARKDOWN_RULES}"
#: cap on the child's answer (markdown + JSON overhead) read into this process
DEFAULT_MAX_OUTPUT_BYTES: Final = 256 * 1024 * 1024

_MAX_MESSAGE_CHARS: Final = 200
# The parse server and its children get no secrets (database URL, API keys, JWT/webhook
# secrets): only what the interpreter needs to start and find the package.
_ENV_ALLOWLIST: Final = (
    "PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "SYSTEMROOT",
)


async def parse_pdf(
    data: bytes,
    *,
    max_pages: int = 1000,
    timeout_s: float = 120.0,
    memory_mb: int = 1536,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_page_chars: int = WorkLimits.max_page_chars,
    max_document_chars: int = WorkLimits.max_document_chars,
) -> ParsedPdf:
    """Convert PDF bytes to markdown in a sandboxed child process (text caps: `text_limit`)."""
    if max_pages < 1 or memory_mb < 1 or max_output_bytes < 1 or not timeout_s > 0:
        raise ValueError("max_pages, memory_mb, max_output_bytes and timeout_s must be > 0")
    limits = {
        "max_pages": max_pages,
        "memory_mb": memory_mb,
        # The CPU limit backs up the wall-clock timeout: it holds even if this process dies.
        "cpu_seconds": math.ceil(timeout_s) + 1,
        "max_page_chars": max_page_chars,
        "max_document_chars": max_document_chars,
    }
    return await parse_in_child(data, limits, timeout_s=timeout_s, max_output=max_output_bytes)


async def parse_in_child(
    data: bytes, limits: Mapping[str, int | None], *, timeout_s: float, max_output: int
) -> ParsedPdf:
    """One child of the parse server with these ``parse_child.run`` limits."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    run = ChildRun(shared_server(_child_env()), limits)
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            pid = await run.started()
        try:
            async with asyncio.timeout(timeout_s):
                stdout = await run.exchange(data, max_output)
                if stdout is None:
                    raise ParseError(ErrorCode.PARSE_LIMIT, "parser output exceeded the size limit")
                returncode = await run.exited()
        except TimeoutError:
            logger.warning(
                "parse process timed out",
                extra={"action": "parse_timeout", "pid": pid, "timeout_s": timeout_s},
            )
            raise ParseError(
                ErrorCode.PARSE_LIMIT, f"parse exceeded the time limit of {timeout_s:g} s"
            ) from None
    except TimeoutError:
        raise TransientError(
            ErrorCode.PARSER_UNAVAILABLE, "the parse server did not answer in time"
        ) from None
    finally:
        await run.finish()
    result = _interpret(returncode, stdout, pid=pid)
    logger.debug(
        "parse process finished",
        extra={
            "action": "parse_done",
            "pid": pid,
            "pages": result.pages,
            "duration_ms": round((loop.time() - started) * 1000),
        },
    )
    return result


class LocalParser:
    """The local parser behind a small interface: ``name``, ``version``, ``parse``."""

    def __init__(
        self,
        *,
        max_pages: int = 1000,
        timeout_s: float = 120.0,
        memory_mb: int = 1536,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        max_page_chars: int = WorkLimits.max_page_chars,
        max_document_chars: int = WorkLimits.max_document_chars,
    ) -> None:
        if max_pages < 1 or memory_mb < 1 or max_output_bytes < 1 or not timeout_s > 0:
            raise ValueError("max_pages, memory_mb, max_output_bytes and timeout_s must be > 0")
        self.name: str = PARSER_NAME
        self.version: str = PARSER_VERSION
        self.max_pages = max_pages
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_bytes = max_output_bytes
        self.max_page_chars = max_page_chars
        self.max_document_chars = max_document_chars

    def start(self) -> None:
        """Start this process's parse server now (it imports PDFium in the background), so
        that the first document does not wait for it."""
        shared_server(_child_env()).ensure_running()

    async def parse(self, data: bytes) -> ParsedPdf:
        return await parse_pdf(
            data,
            max_pages=self.max_pages,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            max_output_bytes=self.max_output_bytes,
            max_page_chars=self.max_page_chars,
            max_document_chars=self.max_document_chars,
        )


def _child_env() -> dict[str, str]:
    return {key: os.environ[key] for key in _ENV_ALLOWLIST if key in os.environ}


def _interpret(returncode: int, stdout: bytes, *, pid: int) -> ParsedPdf:
    if returncode < 0:
        signum = -returncode
        logger.warning(
            "parse process killed by a signal",
            extra={"action": "parse_killed", "pid": pid, "signal": _signal_name(signum)},
        )
        raise ParseError(
            ErrorCode.PARSE_LIMIT,
            f"parse process killed by {_signal_name(signum)} (resource limit or crash)",
        )
    answer = _decode(stdout)
    if answer is None:
        if returncode != 0:
            logger.warning(
                "parse process failed before answering",
                extra={"action": "parse_child_failed", "pid": pid, "returncode": returncode},
            )
            raise TransientError(
                ErrorCode.PARSER_UNAVAILABLE,
                f"parse process exited with status {returncode} without an answer",
            )
        raise ParseError(ErrorCode.CORRUPT_PDF, "parse process returned no valid answer")
    ok = answer.get("ok")
    if ok is True:
        return _parsed(answer)
    if ok is False:
        raise _failure(answer)
    raise ParseError(ErrorCode.CORRUPT_PDF, "parse process returned no valid answer")


def _decode(stdout: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(stdout)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None
    return answer if isinstance(answer, dict) else None


def _parsed(answer: dict[str, Any]) -> ParsedPdf:
    markdown = answer.get("markdown")
    pages = answer.get("pages")
    repaired = answer.get("repaired")
    empty_pages = answer.get("empty_pages")
    if (
        isinstance(markdown, str)
        and _is_count(pages)
        and isinstance(repaired, bool)
        and _is_count(empty_pages)
    ):
        return ParsedPdf(markdown=markdown, pages=pages, repaired=repaired, empty_pages=empty_pages)
    raise ParseError(ErrorCode.CORRUPT_PDF, "parse process returned a malformed answer")


def _failure(answer: dict[str, Any]) -> ParseError:
    try:
        code = ErrorCode(str(answer.get("code")))
    except ValueError:
        return ParseError(ErrorCode.CORRUPT_PDF, "parse process returned an unknown error code")
    message = answer.get("message")
    if not isinstance(message, str) or not message:
        message = "parse failed"
    return ParseError(code, message[:_MAX_MESSAGE_CHARS])


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
