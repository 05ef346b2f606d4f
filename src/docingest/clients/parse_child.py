"""One document in a sandboxed child of the parse server (``parse_server``).

``run`` reads PDF bytes from stdin until EOF, caps its own memory/CPU with setrlimit,
converts the PDF with ``pdf_markdown.pdf_to_markdown`` and writes exactly one JSON object to
stdout:

    {"ok": true, "markdown": "...", "pages": n, "repaired": bool, "empty_pages": n}
    {"ok": false, "code": "<ErrorCode value>", "message": "<content-free message>"}

The child then exits with status 0 in both cases; a non-zero status or a death by signal
(SIGKILL from the parent's timeout, SIGXCPU from RLIMIT_CPU, SIGSEGV/SIGABRT from PDFium) is
interpreted by ``local_parser``. While parsing, file descriptor 1 points at stderr so that
nothing the native library prints can corrupt the JSON answer.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from typing import Any

from docingest.domain.errors import ErrorCode, ParseError

_MIB = 1024 * 1024
# Slack between the soft CPU limit (SIGXCPU, catchable in principle) and the hard one
# (SIGKILL), in seconds.
_CPU_HARD_SLACK = 2
_PR_SET_DUMPABLE = 4
_READ_CHUNK = 1 << 20


def run(
    *,
    max_pages: int,
    memory_mb: int | None,
    cpu_seconds: int | None,
    max_page_chars: int | None,
    max_document_chars: int | None,
) -> None:
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints from PDFium or Python go to stderr, not into the answer
    try:
        apply_limits(memory_mb=memory_mb, cpu_seconds=cpu_seconds)
        answer = convert(
            _read_stdin(),
            max_pages=max_pages,
            max_page_chars=max_page_chars,
            max_document_chars=max_document_chars,
        )
    except BaseException:  # the answer must always be one JSON object
        answer = _failure(ErrorCode.CORRUPT_PDF, "unexpected parser failure")
    payload = json.dumps(answer, ensure_ascii=False).encode("utf-8")
    with os.fdopen(answer_fd, "wb") as out:
        out.write(payload)


def _read_stdin() -> bytes:
    chunks = []
    while chunk := os.read(0, _READ_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def apply_limits(*, memory_mb: int | None, cpu_seconds: int | None) -> None:
    """Lower this process's limits: address space, CPU time, and no core dumps (a core
    file would write document contents to disk)."""
    _lower(resource.RLIMIT_CORE, 0, 0)
    _not_dumpable()
    if memory_mb is not None:
        limit = memory_mb * _MIB
        _lower(resource.RLIMIT_AS, limit, limit)
    if cpu_seconds is not None:
        _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + _CPU_HARD_SLACK)


def _not_dumpable() -> None:
    """Linux: PR_SET_DUMPABLE=0 also stops core dumps piped to a handler (core_pattern
    "|..." ignores RLIMIT_CORE) and ptrace attachment by other processes of the user."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # best effort; RLIMIT_CORE=0 still applies


def _lower(which: int, soft: int, hard: int) -> None:
    """Set a limit without ever raising it above the current hard limit."""
    _, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


def convert(
    data: bytes, *, max_pages: int, max_page_chars: int | None, max_document_chars: int | None
) -> dict[str, Any]:
    """The answer for one document: markdown and counts, or a failure code (never text)."""
    try:
        # imported here: the parse server loads it once, before it forks any child
        from docingest.clients.pdf_markdown import pdf_to_markdown

        parsed = pdf_to_markdown(
            data,
            max_pages=max_pages,
            max_page_chars=max_page_chars,
            max_document_chars=max_document_chars,
        )
    except ParseError as exc:
        return _failure(exc.code, exc.message)
    except MemoryError:
        return _failure(ErrorCode.PARSE_LIMIT, "memory limit exceeded")
    except RecursionError:
        return _failure(ErrorCode.PARSE_LIMIT, "document structure too deep")
    except Exception:  # messages may carry document content; drop them
        return _failure(ErrorCode.CORRUPT_PDF, "unexpected parser failure")
    return {
        "ok": True,
        "markdown": parsed.markdown,
        "pages": parsed.pages,
        "repaired": parsed.repaired,
        "empty_pages": parsed.empty_pages,
    }


def _failure(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code.value, "message": message}
