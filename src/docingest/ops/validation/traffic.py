"""Client-side traffic for validation: uploads through the real API and a status-read
sampler that measures `GET /v1/jobs/{id}` latency while ingest runs."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from docingest.testing.pdfgen import make_pdf

if TYPE_CHECKING:
    from docingest.ops.validation.stack import Stack


@dataclass(frozen=True)
class Upload:
    """One upload's answer. `job_id` is None when the API refused the file."""

    label: str  # a corpus name or "generated:<seed>"; reports only, never logged
    status_code: int
    job_id: str | None
    document_id: str | None
    duplicate: bool
    error: dict[str, Any] | None


def _unshed(send: Callable[[], httpx.Response]) -> httpx.Response:
    """`send()`, again after the Retry-After of a 429/503 shed answer (at most 20 tries)."""
    for _ in range(19):
        r = send()
        if r.status_code not in (429, 503):
            return r
        time.sleep(float(r.headers.get("retry-after", "1")))  # the server's own back-off hint
    return send()


def delete(client: httpx.Client, document_id: str) -> int:
    """DELETE /v1/documents/{id}, retrying a shed answer; the final status code."""
    return _unshed(lambda: client.delete(f"/v1/documents/{document_id}")).status_code


def upload(client: httpx.Client, label: str, data: bytes) -> Upload:
    """POST /v1/documents, retrying a 429/503 shed answer after its Retry-After."""
    r = _unshed(
        lambda: client.post(
            "/v1/documents", files={"file": ("upload.pdf", data, "application/pdf")}
        )
    )
    body: dict[str, Any] = r.json() if r.content else {}
    if r.status_code == 202:
        return Upload(
            label, 202, str(body["job_id"]), str(body["document_id"]), bool(body["duplicate"]), None
        )
    return Upload(label, r.status_code, None, None, False, body.get("error"))


def upload_concurrently(client: httpx.Client, documents: list[tuple[str, bytes]]) -> list[Upload]:
    """(label, PDF) pairs uploaded by 4 concurrent clients; the answers in the same order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda d: upload(client, *d), documents))


def upload_generated(
    client: httpx.Client, seeds: range | list[int], *, pages: int = 2, lines: int = 40
) -> list[Upload]:
    """Generated documents, uploaded by 4 concurrent clients (answers in `seeds` order)."""
    return upload_concurrently(
        client, [(f"generated:{s}", make_pdf(s, pages, lines)) for s in seeds]
    )


_seeds = itertools.count(100_000)


def new_documents(n: int, *, pages: int = 2, lines: int = 40) -> list[bytes]:
    """`n` generated PDFs no earlier run has seen (made before any clock starts)."""
    return [make_pdf(next(_seeds), pages, lines) for _ in range(n)]


def upload_all(stack: Stack, documents: list[bytes]) -> list[str]:
    """Upload `documents` by 4 concurrent clients; their job ids (any refusal raises)."""
    with stack.client() as client:
        ups = upload_concurrently(client, [("generated", d) for d in documents])
    refused = [u.status_code for u in ups if u.job_id is None]
    if refused:
        raise RuntimeError(f"uploads refused with HTTP {refused}")
    return [str(u.job_id) for u in ups]


def fresh_documents(stack: Stack, n: int, *, pages: int = 2) -> list[str]:
    """Upload `n` generated documents no earlier run has seen; their job ids."""
    return upload_all(stack, new_documents(n, pages=pages))


@dataclass
class StatusSampler:
    """Reads random jobs' status one request at a time on a thread until stopped."""

    client: httpx.Client
    job_ids: list[str]
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StatusSampler:
        self._thread = threading.Thread(target=self._run, name="status-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = random.Random(7)
        while not self._stop.is_set() and self.job_ids:
            job_id = rng.choice(self.job_ids)
            started = time.perf_counter()
            try:
                r = self.client.get(f"/v1/jobs/{job_id}")
            except httpx.HTTPError:
                self.errors += 1
                continue
            if r.status_code == 200:
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                self.errors += 1
            self._stop.wait(0.02)  # pacing: ~40 reads/s, a busy dashboard's worth
