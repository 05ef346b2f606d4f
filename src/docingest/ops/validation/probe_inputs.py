"""Input probes: not a PDF, empty, oversized (declared and streamed), and every hostile
corpus file that must fail, with a valid PDF beside them that must complete."""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import httpx

from docingest.ops.validation.corpus_manifest import check_outcome, must_fail, read_manifest
from docingest.ops.validation.probe_kit import (
    STREAM_CHUNK,
    Context,
    Lazy,
    Upload,
    expect,
)

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
