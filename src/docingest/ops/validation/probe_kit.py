"""The probes' own kit: where the stack is, the users and uploads they act as, one HTTP
context, `expect`, and the runner pieces (`Lazy` shared set-ups, `run_one`) that turn a probe
into a `ProbeResult` without letting one failure stop the others."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from docingest.domain.states import TERMINAL
from docingest.security.bearer_tokens import mint_token

SIGNED_ROUTE = "/webhooks/llamaparse"
PROBE_ROUTE = "/v1/documents"  # the route token probes knock on
PARSER = ("security-probe", "1")  # parser name/version our genuine callbacks claim
HOLD_PARSE_MS = 3_600_000.0  # the fake parser keeps probe jobs PENDING this long
POLL_S = 0.1
SETTLE_S = 15.0  # a genuine callback may meet a busy job (409 + Retry-After) this long
STREAM_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProbeTarget:
    api_url: str  # a running docingest API (with workers running)
    jwt_secret: str
    webhook_secret: str
    corpus_dir: Path  # ../shared/corpus (hostile/ + MANIFEST.tsv)
    sample_pdf: Path  # a small valid PDF
    max_upload_bytes: int
    fake_llamaparse_url: str | None  # control endpoint of the fake parser, when the stack uses it


@dataclass(frozen=True)
class ProbeResult:
    name: str  # e.g. "callback.forged"
    passed: bool
    detail: str  # short, ids/status codes only, never document text, filenames or tokens


class ProbeFailed(Exception):
    """A probe's finding: `detail` says what was wrong (codes and counts only)."""


def expect(condition: bool, detail: str) -> None:
    if not condition:
        raise ProbeFailed(detail)


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass(frozen=True)
class User:
    user_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Upload:
    owner: User
    document_id: str
    job_id: str


@dataclass
class Context:
    target: ProbeTarget
    http: httpx.Client
    terminal_timeout_s: float
    sample: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.sample = self.target.sample_pdf.read_bytes()

    def user(self) -> User:
        user_id = uuid.uuid4()
        return User(user_id, mint_token(self.target.jwt_secret, user_id))

    def upload(self, owner: User, data: bytes) -> Upload:
        r = self.post_file(owner.headers, data)
        expect(r.status_code == 202, f"upload answered {r.status_code}")
        body = r.json()
        return Upload(owner, str(body["document_id"]), str(body["job_id"]))

    def post_file(self, headers: dict[str, str], data: bytes) -> httpx.Response:
        files = {"file": ("probe.pdf", data, "application/pdf")}
        return self.http.post("/v1/documents", files=files, headers=headers)

    def job(self, up: Upload) -> dict[str, Any]:
        r = self.http.get(f"/v1/jobs/{up.job_id}", headers=up.owner.headers)
        expect(r.status_code == 200, f"owner's job read answered {r.status_code}")
        body: dict[str, Any] = r.json()
        return body

    def wait(
        self, ups: list[Upload], done: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> list[dict[str, Any]]:
        """Poll the owners' job reads until every job satisfies `done` (TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            jobs = [self.job(up) for up in ups]
            if all(done(j) for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                waiting = sorted({j["status"] for j in jobs if not done(j)})
                raise TimeoutError(f"jobs still {','.join(waiting)} after {timeout_s:.0f} s")
            time.sleep(POLL_S)  # poll interval; the condition is the job's status

    def terminal(self, ups: list[Upload]) -> list[dict[str, Any]]:
        return self.wait(ups, lambda j: j["status"] in TERMINAL, self.terminal_timeout_s)


# --------------------------------------------------------------------------- runner


class Lazy:
    """A shared setup run once on first use; its failure fails every probe that needs it."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def __call__(self) -> Any:
        if not self._done:
            self._done = True
            try:
                self._value = self._make()
            except Exception as exc:  # every dependent probe reports it
                self._error = exc
        if self._error is not None:
            raise ProbeFailed(f"setup failed: {_describe(self._error)}")
        return self._value


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ProbeFailed) else type(exc).__name__


def run_one(name: str, probe: Callable[[Context], str], ctx: Context) -> ProbeResult:
    try:
        return ProbeResult(name, True, probe(ctx))
    except Exception as exc:  # a failed probe never stops the others
        return ProbeResult(name, False, _describe(exc))
