"""LlamaParse v1 client (CONTRACTS.md §1.2): submit, status, markdown result.

* Submit: `POST {base}/api/parsing/upload`, multipart `file` plus plain form fields:
  `result_type=markdown`, `do_not_cache=true` (the documents carry PHI), and our
  `webhook_url` (`{DOCINGEST_PUBLIC_URL}/webhooks/llamaparse/{job_id}?token=...`). The v1
  API has no custom webhook headers, so the job's callback token travels in the URL query.
  The file is sent as `document.pdf`: the user's filename never leaves us. Two extra fields,
  `docingest_job_id` and `docingest_document_id` (random ids, not PHI), let a signing relay
  build the seed callback.
* Status: `GET /api/parsing/job/{id}`; SUCCESS, PENDING, and every other status (ERROR,
  PARTIAL_SUCCESS, CANCELED/CANCELLED, unknown) is a failure carrying the parser's
  `error_code` (like the official client). 404 means the parser does not know the job.
* Result: `GET /api/parsing/job/{id}/result/markdown` -> `{"markdown": ...}`.

429, 500, 502, 503, 504 and connection errors are retried here with exponential backoff
(honouring `retry-after`), then surface as `TransientError(parser_unavailable)` so the job
backs off; 401/403 and other 4xx are `PermanentError(parser_rejected)`. Messages carry
status codes and the parser's error code, never document text or the API key.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import httpx

from docingest.clients.http_retry import Backoff, Retryable, retry_after_seconds, with_retries
from docingest.domain.errors import ErrorCode, PermanentError, TransientError
from docingest.security.outbound import require_tls_or_loopback

PARSER_NAME = "llamaparse"
PARSER_VERSION = "v1-markdown"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_INLINE_WAIT_S = 30.0  # longer server hints go back to the job scheduler
_BASE_DELAY_S = 1.0
_MAX_DELAY_S = 8.0
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


@dataclass(frozen=True)
class RemoteJobStatus:
    state: Literal["pending", "success", "failed"]
    status: str  # the parser's own word, made safe for messages
    error_code: str | None


def _label(value: object) -> str:
    return _SAFE.sub("_", str(value))[:64] or "none"


def interpret_status(body: object) -> RemoteJobStatus:
    """Map a v1 status body to pending/success/failed."""
    raw = body.get("status") if isinstance(body, dict) else None
    status = _label(raw).upper()
    code = body.get("error_code") if isinstance(body, dict) else None
    error_code = _label(code) if code else None
    if status == "SUCCESS":
        return RemoteJobStatus("success", status, None)
    if status == "PENDING":
        return RemoteJobStatus("pending", status, None)
    return RemoteJobStatus("failed", status, error_code)


class LlamaParseClient:
    """The remote parser: `submit`, `status`, `markdown`; `aclose()` when done. One HTTP
    client, made at the first call, keeps its connections alive between calls: a client per
    call (building it, then a TCP connect, and TLS against the real service) was about a fifth
    of the CPU a busy worker spent on parser requests. A kept connection the server has closed fails as a transport error
    and is retried like one."""

    name = PARSER_NAME
    version = PARSER_VERSION

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = 4,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._base = require_tls_or_loopback(base_url, "LlamaParse URL")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = timeout
        self._transport = transport
        # Building a TLS context loads the CA bundle: ~25 ms of CPU. Once per client, not
        # once per request (a document takes three or more requests).
        self._tls = httpx.create_ssl_context()
        self._client: httpx.AsyncClient | None = None
        self.backoff = Backoff(
            max_attempts=max_attempts,
            initial_delay_s=_BASE_DELAY_S,
            max_delay_s=_MAX_DELAY_S,
            max_inline_wait_s=MAX_INLINE_WAIT_S,
        )
        self._sleep = sleep
        self._jitter = jitter

    async def submit(
        self, data: bytes, *, job_id: UUID, document_id: UUID, webhook_url: str | None
    ) -> str:
        """Upload the PDF; return the parser's job id."""
        fields = {
            "result_type": "markdown",
            "do_not_cache": "true",
            "docingest_job_id": str(job_id),
            "docingest_document_id": str(document_id),
        }
        if webhook_url:
            fields["webhook_url"] = webhook_url
        response = await self._request(
            "POST",
            "/api/parsing/upload",
            data=fields,
            files={"file": ("document.pdf", data, "application/pdf")},
        )
        self._raise_for_status(response, "upload")
        external_id = _json(response, "upload").get("id")
        if not isinstance(external_id, str) or not _EXTERNAL_ID.match(external_id):
            raise PermanentError(ErrorCode.PARSER_REJECTED, "llamaparse upload returned no job id")
        return external_id

    async def status(self, external_id: str) -> RemoteJobStatus | None:
        """The job's status; None when the parser does not know the job (404)."""
        response = await self._request("GET", f"/api/parsing/job/{_checked(external_id)}")
        if response.status_code == 404:
            return None
        self._raise_for_status(response, "status")
        return interpret_status(_json(response, "status"))

    async def markdown(self, external_id: str) -> str:
        response = await self._request(
            "GET", f"/api/parsing/job/{_checked(external_id)}/result/markdown"
        )
        self._raise_for_status(response, "result")
        text = _json(response, "result").get("markdown")
        if not isinstance(text, str):
            raise PermanentError(ErrorCode.PARSER_REJECTED, "llamaparse result has no markdown")
        return text

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await with_retries(
                lambda: self._once(method, path, **kwargs),
                self.backoff,
                what="llamaparse request",
                sleep=self._sleep,
                jitter=self._jitter,
                log_extra={"action": "llamaparse_retry"},
            )
        except Retryable as failure:
            raise TransientError(
                ErrorCode.PARSER_UNAVAILABLE,
                f"llamaparse unavailable: {failure.reason}",
                retry_after=failure.retry_after,
            ) from failure

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._transport,
                headers=self._headers,
                verify=self._tls,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http().request(method, self._base + path, **kwargs)
        except httpx.TransportError as exc:  # connection errors and timeouts
            raise Retryable(type(exc).__name__) from exc
        if response.status_code in RETRY_STATUSES:
            raise Retryable(f"HTTP {response.status_code}", retry_after_seconds(response.headers))
        return response

    @staticmethod
    def _raise_for_status(response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        code = response.status_code
        reason = "refused our credentials" if code in (401, 403) else "rejected the request"
        raise PermanentError(ErrorCode.PARSER_REJECTED, f"llamaparse {what} {reason}: HTTP {code}")


def _checked(external_id: str) -> str:
    if not _EXTERNAL_ID.match(external_id):
        raise PermanentError(ErrorCode.PARSER_REJECTED, "malformed llamaparse job id")
    return external_id


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise PermanentError(ErrorCode.PARSER_REJECTED, f"llamaparse {what} answer is not JSON")
    return body
