"""Callback probes: forged, stale, altered, replayed, rotated-key, mismatched and
hash-mismatched signed callbacks and hint callbacks without or with a wrong token, each against
a job of its own the fake parser holds in `parse_queued` (see probes.py)."""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from docingest.domain import seed_callback, webhook_auth
from docingest.ops.validation.probe_kit import (
    HOLD_PARSE_MS,
    PARSER,
    POLL_S,
    SETTLE_S,
    SIGNED_ROUTE,
    Context,
    ProbeFailed,
    Upload,
    expect,
)

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
