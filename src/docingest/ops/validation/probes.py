"""The security probes of `docingest validate` (DESIGN.md §4, §5, §8; issue 4): attacks on a
running stack over HTTP, each judged by the status code it must get AND by nothing having
changed, with a genuine request right after as the control (so a refusal proves the defect
was refused, not that the route is broken).

* callbacks: forged, stale, altered, replayed, rotated-key, mismatched and hash-mismatched
  signed callbacks, and hint callbacks without or with a wrong token, each against a job of
  its own waiting in `parse_queued`. The fake parser holds those jobs PENDING (its
  `parse_delay_ms` fault, set for their uploads only), so no callback of its own and no
  reconciler poll can move them; the probes finish them with genuine signed callbacks.
  The stack's callback timeout must exceed the few seconds the refusals take.
* cross-user: another user's token answers 404 on every route that names A's document or
  job, and neither listing nor search (over identical text of B's own) shows A's rows.
* tokens: bad signature, expired, `alg: none`, another algorithm, no `exp`, none, malformed.
* inputs: not a PDF, empty, oversized (declared and streamed), every hostile corpus file
  whose MANIFEST row says it must fail, and a valid PDF beside them that must complete.

Probes run one after another on an otherwise idle stack. A probe's `detail` holds status
codes, counts and reasons only: never document text, file names or tokens.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import select
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from docingest.domain import seed_callback, webhook_auth
from docingest.domain.states import TERMINAL
from docingest.ops.validation.corpus_manifest import check_outcome, must_fail, read_manifest
from docingest.security.bearer_tokens import ALGORITHM, mint_token

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


# --------------------------------------------------------------------------- signed callbacks


def callback_body(up: Upload, markdown: str, **override: Any) -> bytes:
    """The §5 body for `up`'s job (fields overridable, e.g. a wrong document or hash)."""
    body = json.loads(
        seed_callback.build(uuid.UUID(up.job_id), uuid.UUID(up.document_id), markdown, *PARSER)
    )
    artifact = {**body["artifacts"][0], **override.pop("artifact", {})}
    return json.dumps({**body, **override, "artifacts": [artifact]}).encode("utf-8")


def signature(secret: str, job_id: str, msg_id: str, ts: int, body: bytes) -> str:
    key = webhook_auth.job_signing_key(secret, uuid.UUID(job_id))
    return webhook_auth.sign(key, msg_id, ts, body)


def probe_markdown(up: Upload) -> str:
    """Text for a genuine callback: probe ids only."""
    return f"# Security probe\n\nProbe marker {uuid.uuid4().hex} for job {up.job_id}.\n"


def deliver(
    ctx: Context,
    body: bytes,
    *,
    job_id: str,
    msg_id: str | None = None,
    ts: int | None = None,
    sig: str | None = None,
) -> httpx.Response:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if ts is None else ts
    sig = sig or signature(ctx.target.webhook_secret, job_id, msg_id, ts, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sig,
    }
    return ctx.http.post(SIGNED_ROUTE, content=body, headers=headers)


def settle(send: Callable[[], httpx.Response]) -> httpx.Response:
    """Send a genuine callback, again while the job is busy (409), as a sender would."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        r = send()
        if r.status_code != 409 or time.monotonic() > deadline:
            return r
        time.sleep(POLL_S)  # the sender's retry interval; the condition is the answer


def genuine(ctx: Context, up: Upload, **kw: Any) -> httpx.Response:
    """The control: a correct callback for a job still waiting is applied (`accepted`)."""
    body = callback_body(up, probe_markdown(up))
    r = settle(lambda: deliver(ctx, body, job_id=up.job_id, **kw))
    outcome = r.json().get("status") if r.status_code == 200 else None
    expect(outcome == "accepted", f"genuine callback answered {r.status_code} {outcome}")
    return r


def refused(
    ctx: Context, up: Upload, status: int, attempts: dict[str, Callable[[], httpx.Response]]
) -> str:
    """Each attempt answers `status` and leaves `up`'s job exactly as it was."""
    before = ctx.job(up)
    expect(before["status"] == "parse_queued", f"job not waiting ({before['status']})")
    got = {label: send().status_code for label, send in attempts.items()}
    wrong = {k: v for k, v in got.items() if v != status}
    expect(not wrong, f"expected {status}, got {wrong}")
    expect(ctx.job(up) == before, "the job changed")
    return f"{len(got)} x {status}, job unchanged"


def probe_forged(ctx: Context, up: Upload) -> str:
    body = callback_body(up, probe_markdown(up))
    random_key = webhook_auth.sign(uuid.uuid4().bytes * 2, "msg_x", int(time.time()), body)

    def unsigned() -> httpx.Response:
        return ctx.http.post(
            SIGNED_ROUTE, content=body, headers={"content-type": "application/json"}
        )

    detail = refused(
        ctx,
        up,
        401,
        {
            "unsigned": unsigned,
            "random_key": lambda: deliver(
                ctx, body, job_id=up.job_id, msg_id="msg_x", sig=random_key
            ),
            "garbage": lambda: deliver(ctx, body, job_id=up.job_id, sig="v1,AAAA v2,Zm9v"),
        },
    )
    genuine(ctx, up)
    return detail


def probe_stale(ctx: Context, up: Upload) -> str:
    body = callback_body(up, probe_markdown(up))
    now = int(time.time())
    tolerance = webhook_auth.TOLERANCE_S
    detail = refused(
        ctx,
        up,
        401,
        {
            "past": lambda: deliver(ctx, body, job_id=up.job_id, ts=now - tolerance - 30),
            "future": lambda: deliver(ctx, body, job_id=up.job_id, ts=now + tolerance + 30),
        },
    )
    genuine(ctx, up)
    return detail


def probe_altered(ctx: Context, up: Upload) -> str:
    signed = callback_body(up, probe_markdown(up))
    altered = callback_body(up, probe_markdown(up))  # another marker: same shape, other bytes
    ts, msg_id = int(time.time()), f"msg_{uuid.uuid4().hex}"
    sig = signature(ctx.target.webhook_secret, up.job_id, msg_id, ts, signed)
    detail = refused(
        ctx,
        up,
        401,
        {"altered": lambda: deliver(ctx, altered, job_id=up.job_id, msg_id=msg_id, ts=ts, sig=sig)},
    )
    genuine(ctx, up)
    return detail


def probe_replayed(ctx: Context, up: Upload) -> str:
    """The same delivery twice: acknowledged both times, applied once."""
    body = callback_body(up, probe_markdown(up))
    ts, msg_id = int(time.time()), f"msg_{uuid.uuid4().hex}"
    sig = signature(ctx.target.webhook_secret, up.job_id, msg_id, ts, body)

    def send() -> httpx.Response:
        return deliver(ctx, body, job_id=up.job_id, msg_id=msg_id, ts=ts, sig=sig)

    first = settle(send)
    expect(
        first.status_code == 200 and first.json().get("status") == "accepted",
        f"first delivery answered {first.status_code}",
    )
    again = send()
    outcome = again.json().get("status") if again.is_success else None
    expect(outcome == "duplicate", f"replay answered {again.status_code} {outcome}")
    [job] = ctx.terminal([up])
    doc = ctx.http.get(f"/v1/documents/{up.document_id}", headers=up.owner.headers).json()
    chunks, total = doc.get("chunks"), job["progress"]["chunks_total"]
    expect(job["status"] == "complete" and job["retry_count"] == 0, f"job ended {job['status']}")
    expect(chunks == doc.get("vectors") == total == 1, f"chunks {chunks}, progress {total}")
    return "200 accepted, replay 200 duplicate, job complete with its one chunk"


def probe_rotated_key(ctx: Context, up: Upload) -> str:
    """A key of another (old) secret is refused; old and current side by side are accepted."""
    body = callback_body(up, probe_markdown(up))
    secret, ts = ctx.target.webhook_secret, int(time.time())

    def send(msg_id: str, secrets: list[str]) -> httpx.Response:
        sigs = " ".join(signature(s, up.job_id, msg_id, ts, body) for s in secrets)
        return deliver(ctx, body, job_id=up.job_id, msg_id=msg_id, ts=ts, sig=sigs)

    old = f"old-{secret}"
    detail = refused(ctx, up, 401, {"old_key": lambda: send("msg_old", [old])})
    r = settle(lambda: send("msg_rotating", [old, secret]))
    outcome = r.json().get("status") if r.status_code == 200 else None
    expect(outcome == "accepted", f"old+current answered {r.status_code} {outcome}")
    return f"{detail}; old+current 200 accepted"


def probe_mismatched(ctx: Context, up: Upload, other: Upload) -> str:
    """J's key over a body naming another job's document, or a job that does not exist."""
    md = probe_markdown(up)
    cross = callback_body(up, md, document_id=other.document_id)
    ghost = str(uuid.uuid4())
    unknown = callback_body(up, md, job_id=ghost)
    other_before = ctx.job(other)
    detail = refused(
        ctx,
        up,
        404,
        {
            "other_document": lambda: deliver(ctx, cross, job_id=up.job_id),
            "unknown_job": lambda: deliver(ctx, unknown, job_id=ghost),
        },
    )
    expect(ctx.job(other) == other_before, "the other job changed")
    genuine(ctx, up)
    genuine(ctx, other)
    return detail


def probe_artifact_hash(ctx: Context, up: Upload) -> str:
    md = probe_markdown(up)
    size = len(md.encode("utf-8"))
    bad_sha = callback_body(up, md, artifact={"sha256": hashlib.sha256(b"other").hexdigest()})
    bad_size = callback_body(up, md, artifact={"bytes": size + 1})
    detail = refused(
        ctx,
        up,
        422,
        {
            "sha256": lambda: deliver(ctx, bad_sha, job_id=up.job_id),
            "bytes": lambda: deliver(ctx, bad_size, job_id=up.job_id),
        },
    )
    genuine(ctx, up)
    return detail


def hint(ctx: Context, job_id: str, token: str | None, header: bool = False) -> httpx.Response:
    url = f"{SIGNED_ROUTE}/{job_id}"
    if token is not None and header:
        return ctx.http.post(url, json={}, headers={"x-docingest-callback-token": token})
    return ctx.http.post(url, json={}, params={"token": token} if token is not None else None)


def probe_hint(ctx: Context, up: Upload, attempts: dict[str, str | None]) -> str:
    """Hint callbacks with these tokens are refused; the job's own token wakes it (202)."""
    detail = refused(
        ctx,
        up,
        401,
        {label: functools.partial(hint, ctx, up.job_id, tok) for label, tok in attempts.items()},
    )
    own = webhook_auth.callback_token(ctx.target.webhook_secret, uuid.UUID(up.job_id))
    r = settle(lambda: hint(ctx, up.job_id, own, header=True))
    expect(r.status_code == 202, f"the job's own token answered {r.status_code}")
    genuine(ctx, up)  # the parser still holds it PENDING: finish it
    return f"{detail}; own token 202"


# --------------------------------------------------------------------------- fake parser hold


@contextmanager
def parses_held(fake_url: str) -> Iterator[None]:
    """While inside, jobs the fake parser accepts stay PENDING (no callback, polls PENDING)."""
    with httpx.Client(base_url=fake_url, timeout=10) as fake:
        before = fake.get("/control").json()["parse_delay_ms"]
        fake.post("/control", json={"parse_delay_ms": HOLD_PARSE_MS}).raise_for_status()
        try:
            yield
        finally:
            fake.post("/control", json={"parse_delay_ms": before}).raise_for_status()


def waiting_jobs(ctx: Context, n: int) -> list[Upload]:
    """`n` jobs (one user each, the sample PDF) waiting in `parse_queued` for a callback."""
    fake = ctx.target.fake_llamaparse_url
    if fake is None:
        raise ProbeFailed("needs the fake parser: no job can wait for a callback")
    with parses_held(fake):
        ups = [ctx.upload(ctx.user(), ctx.sample) for _ in range(n)]
        ctx.wait(ups, lambda j: j["status"] != "uploaded", 60)
    states = sorted({ctx.job(up)["status"] for up in ups})
    expect(states == ["parse_queued"], f"probe jobs are {','.join(states)}")
    return ups


# --------------------------------------------------------------------------- cross-user


@dataclass(frozen=True)
class Pair:
    a: Upload
    b: Upload  # B's own copy of the same bytes: same text, B's ids


def cross_pair(ctx: Context) -> Pair:
    a = ctx.upload(ctx.user(), ctx.sample)
    b = ctx.upload(ctx.user(), ctx.sample)
    jobs = ctx.terminal([a, b])
    expect([j["status"] for j in jobs] == ["complete"] * 2, "the pair did not complete")
    return Pair(a, b)


def as_b(ctx: Context, p: Pair, method: str, path: str, want: int) -> str:
    r = ctx.http.request(method, path, headers=p.b.owner.headers)
    expect(r.status_code == want, f"{method} answered {r.status_code}, expected {want}")
    owner_view = ctx.http.get(f"/v1/documents/{p.a.document_id}", headers=p.a.owner.headers)
    expect(owner_view.status_code == 200, f"owner's read then answered {owner_view.status_code}")
    body = owner_view.json()
    expect(body["status"] == "complete" and body["chunks"] > 0, "the owner's document changed")
    return f"{method} {r.status_code}; owner still reads it complete"


def probe_cross_search(ctx: Context, p: Pair) -> str:
    query = {"query": "coverage benefits plan", "k": 5}
    mine = ctx.http.post("/v1/search", json=query, headers=p.a.owner.headers).json()["results"]
    expect(
        bool(mine) and {r["document_id"] for r in mine} == {p.a.document_id},
        "A's own search found no A chunks",
    )
    text = str(mine[0]["text"])[:2000]
    theirs = ctx.http.post("/v1/search", json={"query": text, "k": 100}, headers=p.b.owner.headers)
    expect(theirs.status_code == 200, f"B's search answered {theirs.status_code}")
    results = theirs.json()["results"]
    docs = {r["document_id"] for r in results}
    expect(bool(results), "B's search over its own identical document found nothing")
    expect(
        docs == {p.b.document_id},
        f"B's results span {len(docs)} documents, A's among them: {p.a.document_id in docs}",
    )
    return f"B's {len(results)} results are all B's own; none of A's"


def probe_cross_list(ctx: Context, p: Pair) -> str:
    r = ctx.http.get("/v1/documents", params={"limit": 200}, headers=p.b.owner.headers)
    expect(r.status_code == 200, f"B's list answered {r.status_code}")
    ids = [d["document_id"] for d in r.json()["documents"]]
    expect(
        ids == [p.b.document_id],
        f"B's list has {len(ids)} documents, A's among them: {p.a.document_id in ids}",
    )
    return "B lists only its own document"


def cross_user_probes(pair: Callable[[], Pair]) -> list[tuple[str, Callable[[Context], str]]]:
    def route(method: str, template: str, want: int = 404) -> Callable[[Context], str]:
        def run(ctx: Context) -> str:
            p = pair()
            path = template.format(doc=p.a.document_id, job=p.a.job_id)
            return as_b(ctx, p, method, path, want)

        return run

    return [
        ("cross_user.read_document", route("GET", "/v1/documents/{doc}")),
        ("cross_user.read_job", route("GET", "/v1/jobs/{job}")),
        ("cross_user.read_job_by_document", route("GET", "/jobs/{doc}")),
        ("cross_user.delete_document", route("DELETE", "/v1/documents/{doc}")),
        ("cross_user.retry_job", route("POST", "/v1/jobs/{job}/retry")),
        ("cross_user.retry_by_document", route("POST", "/jobs/{doc}/retry")),
        ("cross_user.advance_non_admin", route("POST", "/jobs/{doc}/advance", 403)),
        ("cross_user.search", lambda ctx: probe_cross_search(ctx, pair())),
        ("cross_user.list", lambda ctx: probe_cross_list(ctx, pair())),
    ]


# --------------------------------------------------------------------------- tokens


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jws(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS by hand, for what PyJWT will not (or should not) produce."""
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    mac = hmac.new(key, signing_input.encode(), hashlib.sha512).digest() if key else b""
    return f"{signing_input}.{_b64(mac)}"


def bad_authorizations(secret: str) -> dict[str, str | None]:
    """Authorization header values that must all be refused (None: no header)."""
    now, sub = int(time.time()), str(uuid.uuid4())
    claims = {"sub": sub, "role": "authenticated", "iat": now, "exp": now + 600}
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    return {
        "token.bad_signature": "Bearer " + jwt.encode(claims, f"x{secret}", algorithm=ALGORITHM),
        "token.expired": "Bearer " + jwt.encode(expired, secret, algorithm=ALGORITHM),
        "token.alg_none": "Bearer " + _jws({"alg": "none", "typ": "JWT"}, claims, None),
        "token.other_algorithm": "Bearer "
        + _jws({"alg": "HS512", "typ": "JWT"}, claims, secret.encode()),
        "token.missing_exp": "Bearer " + jwt.encode(no_exp, secret, algorithm=ALGORITHM),
        "token.missing": None,
        "token.malformed_header": "Bearer not.a.jwt",
        "token.wrong_scheme": "Basic " + base64.b64encode(b"user:pass").decode(),
    }


def token_probes(ctx: Context) -> list[tuple[str, Callable[[Context], str]]]:
    def run(name: str) -> Callable[[Context], str]:
        def probe(c: Context) -> str:
            header = bad_authorizations(c.target.jwt_secret)[name]
            r = c.http.get(PROBE_ROUTE, headers={"Authorization": header} if header else {})
            expect(r.status_code == 401, f"answered {r.status_code}, expected 401")
            good = c.http.get(PROBE_ROUTE, headers=c.user().headers)
            expect(good.status_code == 200, f"a valid token then answered {good.status_code}")
            return "401; a valid token 200"

        return probe

    return [(name, run(name)) for name in bad_authorizations(ctx.target.jwt_secret)]


# --------------------------------------------------------------------------- inputs


def probe_refused_upload(ctx: Context, data: bytes, status: int, code: str) -> str:
    r = ctx.post_file(ctx.user().headers, data)
    got = (
        r.json().get("error", {}).get("code")
        if r.headers.get("content-type", "").startswith("application/json")
        else None
    )
    expect(r.status_code == status and got == code, f"answered {r.status_code} {got}")
    return f"{status} {code}"


def _raw_request(
    url: str, head: bytes, body: Iterable[bytes], timeout_s: float = 30
) -> tuple[int, int]:
    """Send a request head, then body pieces until the server answers; return the answer's
    status and how many body bytes went out before it (a server that reads everything
    before answering lets them all out)."""
    u = httpx.URL(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    sock = socket.create_connection((u.host, port), timeout=timeout_s)
    if u.scheme == "https":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=u.host)
    with sock:
        sock.sendall(head)
        sent = 0
        for piece in body:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    line = answer.split(b"\r\n", 1)[0].split()
    expect(len(line) >= 2 and line[1].isdigit(), "no HTTP answer")
    return int(line[1]), sent


def _head(ctx: Context, extra: str) -> bytes:
    u = httpx.URL(ctx.target.api_url)
    return (
        f"POST /v1/documents HTTP/1.1\r\nHost: {u.host}\r\n"
        f"Authorization: Bearer {ctx.user().token}\r\n"
        "Content-Type: multipart/form-data; boundary=probe-boundary\r\n"
        f"{extra}\r\n"
    ).encode()


def probe_oversized_declared(ctx: Context) -> str:
    size = ctx.target.max_upload_bytes + (1 << 20)
    status, _ = _raw_request(ctx.target.api_url, _head(ctx, f"Content-Length: {size}\r\n"), [])
    expect(status == 413, f"answered {status}")
    return "413 before any body byte was sent"


def probe_oversized_streamed(ctx: Context) -> str:
    """No declared length (chunked): the server must stop at the cap while we keep sending."""
    total = 2 * ctx.target.max_upload_bytes + (16 << 20)
    preamble = (
        b'--probe-boundary\r\nContent-Disposition: form-data; name="file"; filename="p.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
    )

    def pieces() -> Iterator[bytes]:
        filler = b"0" * STREAM_CHUNK
        for i in range(total // STREAM_CHUNK):
            data = preamble if i == 0 else filler
            yield b"%x\r\n" % len(data) + data + b"\r\n"

    status, sent = _raw_request(
        ctx.target.api_url, _head(ctx, "Transfer-Encoding: chunked\r\n"), pieces()
    )
    expect(status == 413, f"answered {status}")
    expect(sent < total, f"the server read all {total} bytes before answering")
    return f"413 after {sent >> 20} of {total >> 20} MiB"


@dataclass(frozen=True)
class HostileRun:
    problems: dict[str, str | None]  # manifest name -> problem (None: as expected)
    valid: Upload  # a valid PDF uploaded alongside
    valid_status: str


def hostile_run(ctx: Context) -> HostileRun:
    """Upload every must-fail hostile file and a valid PDF (one user), wait until all end."""
    files = [
        f
        for f in read_manifest(ctx.target.corpus_dir)
        if f.name.startswith("hostile/") and must_fail(f.expect)
    ]
    expect(bool(files), "no must-fail hostile files in the MANIFEST")
    owner = ctx.user()
    problems: dict[str, str | None] = {}
    accepted: dict[str, tuple[str, Upload]] = {}
    for f in files:
        r = ctx.post_file(owner.headers, f.path.read_bytes())
        if r.status_code == 202:
            up = Upload(owner, str(r.json()["document_id"]), str(r.json()["job_id"]))
            accepted[f.name] = (f.expect, up)
        else:
            error = r.json().get("error") or {"code": f"http_{r.status_code}"}
            problems[f.name] = check_outcome(f.expect, "rejected", error)
    valid = ctx.upload(owner, ctx.sample)
    jobs = ctx.terminal([up for _, up in accepted.values()] + [valid])
    for (name, (wanted, _)), job in zip(accepted.items(), jobs, strict=False):
        problems[name] = check_outcome(wanted, job["status"], job["last_error"])
    return HostileRun(problems, valid, jobs[-1]["status"])


def probe_isolation(ctx: Context, run: HostileRun) -> str:
    expect(run.valid_status == "complete", f"the valid PDF ended {run.valid_status}")
    r = ctx.http.get(f"/v1/documents/{run.valid.document_id}", headers=run.valid.owner.headers)
    body = r.json()
    expect(body.get("chunks") == body.get("vectors") > 0, "the valid PDF has no vectors")
    return f"the valid PDF completed beside the hostile ones ({body['chunks']} chunks)"


def hostile_check(hostile: Lazy, name: str) -> Callable[[Context], str]:
    def probe(_: Context) -> str:
        run: HostileRun = hostile()
        problem = run.problems.get(name, "not run")
        expect(problem is None, str(problem))
        return "ended as the MANIFEST expects"

    return probe


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


def run_probes(target: ProbeTarget, *, terminal_timeout_s: float = 180.0) -> list[ProbeResult]:
    with httpx.Client(base_url=target.api_url, timeout=60) as http:
        ctx = Context(target, http, terminal_timeout_s)
        return [run_one(name, probe, ctx) for name, probe in probe_plan(ctx)]


def probe_plan(ctx: Context) -> list[tuple[str, Callable[[Context], str]]]:
    held = Lazy(lambda: waiting_jobs(ctx, 10))
    pair = Lazy(lambda: cross_pair(ctx))
    hostile = Lazy(lambda: hostile_run(ctx))

    def job(i: int) -> Upload:
        ups: list[Upload] = held()
        return ups[i]

    plan: list[tuple[str, Callable[[Context], str]]] = [
        ("callback.forged", lambda c: probe_forged(c, job(0))),
        ("callback.stale", lambda c: probe_stale(c, job(1))),
        ("callback.altered_body", lambda c: probe_altered(c, job(2))),
        ("callback.replayed", lambda c: probe_replayed(c, job(3))),
        ("callback.rotated_key", lambda c: probe_rotated_key(c, job(4))),
        ("callback.mismatched_ids", lambda c: probe_mismatched(c, job(5), job(6))),
        ("callback.artifact_mismatch", lambda c: probe_artifact_hash(c, job(7))),
        ("hint.missing_token", lambda c: probe_hint(c, job(8), {"none": None, "empty": ""})),
        (
            "hint.wrong_token",
            lambda c: probe_hint(
                c,
                job(9),
                {
                    "other_job": webhook_auth.callback_token(
                        c.target.webhook_secret, uuid.UUID(job(0).job_id)
                    ),
                    "random": base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode(),
                },
            ),
        ),
    ]
    plan += cross_user_probes(pair)
    plan += token_probes(ctx)
    plan += [
        (
            "input.not_pdf",
            lambda c: probe_refused_upload(c, b"plain text, no PDF header\n" * 64, 415, "not_pdf"),
        ),
        ("input.empty", lambda c: probe_refused_upload(c, b"", 415, "empty_file")),
        ("input.oversized_declared", probe_oversized_declared),
        ("input.oversized_streamed", probe_oversized_streamed),
    ]
    for f in read_manifest(ctx.target.corpus_dir):
        if f.name.startswith("hostile/") and must_fail(f.expect):
            plan.append((f"input.{Path(f.name).stem}", hostile_check(hostile, f.name)))
    plan.append(("input.hostile_isolation", lambda c: probe_isolation(c, hostile())))
    return plan
