"""The parse-callback routes in-process (real app, Postgres, blob store): the signed seed
callback and the LlamaParse hint. Every refusal is a 4xx that changes nothing but an events
row and the rejection counter; the accepted callback has exactly one effect."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from docingest.bootstrap import Runtime
from docingest.domain import seed_callback, webhook_auth
from docingest.pipeline.parsed_markdown import prepare
from docingest.store import jobs
from docingest.store.db import open_pool
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload
from tests.metrics_scrape import local

SECRET = "webhook-test-secret-0123456789abcdefghijklmnop"
MARKDOWN = "<!-- page 1 -->\n# Deductible\n\nYou pay the first $1,500   of covered services.\n"


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    return make_runtime(
        dsn,
        tmp_path / "home",
        DOCINGEST_WEBHOOK_SECRET=SECRET,
        DOCINGEST_MAX_UPLOAD_BYTES="300000",
        DOCINGEST_MAX_DOCUMENT_CHARS="400000",  # a signed body may then carry 1.26 MB
    )


async def waiting_job(rt: Runtime, *, token: str | None = None) -> dict[str, Any]:
    """An uploaded document whose job waits in parse_queued (as after a LlamaParse submit)."""
    pool = await open_pool(rt.dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            res = await upload(
                conn, rt, uuid.uuid4(), EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
            )
            await conn.execute(
                "UPDATE docingest.upload_jobs SET status = 'parse_queued', parse_external_id = 'ext-1',"
                " callback_token_sha256 = %s, next_attempt_at = now() + interval '10 minutes'"
                " WHERE job_id = %s",
                (webhook_auth.token_sha256(token) if token else None, res.job_id),
            )
    finally:
        await pool.close()
    return {"job_id": res.job_id, "document_id": res.document_id}


def job_row(dsn: str, job_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT status, parsed_path, parsed_sha256, parser_name, next_attempt_at, updated_at,"
            " claimed_by FROM docingest.upload_jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return row


def events(dsn: str, action: str) -> list[tuple[str, uuid.UUID | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT outcome, job_id FROM docingest.events WHERE action = %s ORDER BY event_id",
            (action,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def rejections(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^docingest_webhook_rejections_total\{reason="([^"]+)"\} (\S+)$', text, re.M
        )
    }


def signed(
    job_id: uuid.UUID,
    body: bytes,
    *,
    secret: str = SECRET,
    msg_id: str | None = None,
    ts: int | None = None,
    extra_sigs: tuple[str, ...] = (),
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if ts is None else ts
    sig = webhook_auth.sign(webhook_auth.job_signing_key(secret, job_id), msg_id, ts, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join((*extra_sigs, sig)),
        "content-type": "application/json",
    }


def seed_body(job: dict[str, Any], markdown: str = MARKDOWN) -> bytes:
    return seed_callback.build(job["job_id"], job["document_id"], markdown, "relay", "7")


async def test_signed_callback_stores_the_artifact_once_and_replays_have_no_effect(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    job = await waiting_job(rt)
    body = seed_body(job)
    hdrs = signed(job["job_id"], body)
    r = await client.post("/webhooks/llamaparse", content=body, headers=hdrs)
    assert (r.status_code, r.json()) == (200, {"status": "accepted"})
    after = job_row(rt.dsn, job["job_id"])
    artifact = prepare(job["document_id"], job["job_id"], MARKDOWN)
    assert after["status"] == "parsed" and after["parser_name"] == "relay"
    assert (after["parsed_path"], after["parsed_sha256"]) == (artifact.key, artifact.sha256)
    stored = await rt.blobs.get_bytes(artifact.key, expected_sha256=artifact.sha256)
    assert stored.decode() == artifact.markdown and "$1,500 of" in artifact.markdown
    assert after["next_attempt_at"] <= after["updated_at"]  # claimable at once

    # the same delivery again (same webhook-id, new attempt timestamp): acknowledged, no effect
    again = signed(job["job_id"], body, msg_id=hdrs["webhook-id"])
    r = await client.post("/webhooks/llamaparse", content=body, headers=again)
    assert (r.status_code, r.json()) == (200, {"status": "duplicate"})
    # a duplicate under a new id with the same content: acknowledged, no effect
    r = await client.post("/webhooks/llamaparse", content=body, headers=signed(job["job_id"], body))
    assert (r.status_code, r.json()) == (200, {"status": "already_applied"})
    # a late callback with other content: refused
    other = seed_body(job, "# Something else entirely\n")
    r = await client.post(
        "/webhooks/llamaparse", content=other, headers=signed(job["job_id"], other)
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_waiting"
    assert job_row(rt.dsn, job["job_id"]) == after
    assert events(rt.dsn, "job.parsed") == [("ok", job["job_id"])]
    assert [o for o, _ in events(rt.dsn, "webhook.accepted")] == [
        "accepted",
        "duplicate",
        "already_applied",
    ]
    assert events(rt.dsn, "webhook.rejected") == [("not_waiting", job["job_id"])]


async def test_bad_signatures_are_refused_and_change_nothing_rotation_is_accepted(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    job = await waiting_job(rt)
    body = seed_body(job)
    before = job_row(rt.dsn, job["job_id"])
    metrics_before = await rejections(client)
    now = int(time.time())
    forged_key = webhook_auth.job_signing_key(
        "another-secret-0123456789abcdefghijkl", job["job_id"]
    )
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        ("missing_signature", body, {"content-type": "application/json"}),
        (
            "missing_signature",
            body,
            {k: v for k, v in signed(job["job_id"], body).items() if k != "webhook-signature"},
        ),
        (
            "bad_signature",
            body,
            signed(job["job_id"], body, secret="another-secret-0123456789abcdefghijkl"),
        ),
        ("bad_signature", body, signed(uuid.uuid4(), body)),  # another job's key
        ("stale_timestamp", body, signed(job["job_id"], body, ts=now - 301)),
        ("stale_timestamp", body, signed(job["job_id"], body, ts=now + 400)),
        ("bad_signature", body.replace(b"1,500", b"9,500"), signed(job["job_id"], body)),  # altered
        ("bad_signature", body, {**signed(job["job_id"], body), "webhook-signature": "v1,AAAA"}),
        ("unverifiable_body", b"not json", signed(job["job_id"], b"not json")),
    ]
    for reason, content, hdrs in cases:
        r = await client.post("/webhooks/llamaparse", content=content, headers=hdrs)
        assert r.status_code == 401, (reason, r.text)
        assert r.json()["error"]["code"] == reason
        assert job_row(rt.dsn, job["job_id"]) == before
    # unsigned senders are anonymous: counted per address and minute, not one row each
    assert events(rt.dsn, "webhook.rejected") == []
    for reason in {c[0] for c in cases}:
        assert local("docingest_api_anonymous_refusals_total", status="401", code=reason) > 0
    metrics_after = await rejections(client)
    for reason in {c[0] for c in cases}:
        expected = sum(1 for c in cases if c[0] == reason)
        assert metrics_after[reason] - metrics_before.get(reason, 0) == expected, reason
    with psycopg.connect(rt.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM docingest.webhook_log").fetchone() == (0,)

    # key rotation: an old-key signature and a current one, side by side
    ts = int(time.time())
    old = webhook_auth.sign(forged_key, "msg_rotated", ts, body)
    hdrs = signed(job["job_id"], body, msg_id="msg_rotated", ts=ts, extra_sigs=(old,))
    r = await client.post("/webhooks/llamaparse", content=body, headers=hdrs)
    assert r.status_code == 200 and job_row(rt.dsn, job["job_id"])["status"] == "parsed"


async def test_mismatched_callbacks_are_4xx_and_a_held_job_is_not_touched(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    job = await waiting_job(rt)
    other = await waiting_job(rt)
    before = job_row(rt.dsn, job["job_id"])
    unknown = {"job_id": uuid.uuid4(), "document_id": job["document_id"]}
    wrong_doc = {"job_id": job["job_id"], "document_id": other["document_id"]}
    for target, status, reason in (
        (unknown, 404, "unknown_job"),
        (wrong_doc, 404, "document_mismatch"),
    ):
        body = seed_body(target)
        r = await client.post(
            "/webhooks/llamaparse", content=body, headers=signed(target["job_id"], body)
        )
        assert (r.status_code, r.json()["error"]["code"]) == (status, reason)
    body = seed_body(job).replace(b'"bytes":', b'"bytes":1')  # declared size no longer matches
    r = await client.post("/webhooks/llamaparse", content=body, headers=signed(job["job_id"], body))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "artifact_mismatch")
    empty = seed_body(job, "<!-- page 1 -->\n\n")
    r = await client.post(
        "/webhooks/llamaparse", content=empty, headers=signed(job["job_id"], empty)
    )
    assert (r.status_code, r.json()["error"]["code"]) == (422, "no_text")
    long = seed_body(job, "word " * 100_000)  # 500,000 characters, over the document cap
    r = await client.post("/webhooks/llamaparse", content=long, headers=signed(job["job_id"], long))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "text_limit")
    huge = seed_body(job, "word " * 300_000)  # over the body cap: refused before it is read
    r = await client.post("/webhooks/llamaparse", content=huge, headers=signed(job["job_id"], huge))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
    assert r.headers["connection"] == "close"
    assert job_row(rt.dsn, job["job_id"]) == before

    # a worker holds the job (it may be polling the parser right now): 409, retry later
    with psycopg.connect(rt.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE docingest.upload_jobs SET claimed_by = 'w1', lease_expires_at = now() + interval '1 minute'"
            " WHERE job_id = %s",
            (job["job_id"],),
        )
    body = seed_body(job)
    hdrs = signed(job["job_id"], body)
    r = await client.post("/webhooks/llamaparse", content=body, headers=hdrs)
    assert (r.status_code, r.headers.get("retry-after")) == (409, "1")
    assert job_row(rt.dsn, job["job_id"])["status"] == "parse_queued"
    with psycopg.connect(rt.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE docingest.upload_jobs SET claimed_by = NULL, lease_expires_at = NULL WHERE job_id = %s",
            (job["job_id"],),
        )
    # the sender's retry of the same webhook-id now succeeds: the refused attempt left no trace
    hdrs = signed(job["job_id"], body, msg_id=hdrs["webhook-id"])
    r = await client.post("/webhooks/llamaparse", content=body, headers=hdrs)
    assert (r.status_code, r.json()) == (200, {"status": "accepted"})
    assert [o for o, _ in events(rt.dsn, "webhook.rejected")] == [
        "unknown_job",
        "document_mismatch",
        "artifact_mismatch",
        "no_text",
        "text_limit",
        "job_busy",
    ]


async def test_a_hint_that_beats_the_submission_is_asked_to_retry(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A fast parser calls back before the worker has committed the submission (the job is
    still `uploaded`, no token hash stored yet): the job's real token gets 409 with
    Retry-After, so the sender retries; any other token still gets 401."""
    pool = await open_pool(rt.dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            res = await upload(
                conn, rt, uuid.uuid4(), EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
            )
    finally:
        await pool.close()
    path = f"/webhooks/llamaparse/{res.job_id}"
    right = webhook_auth.callback_token(SECRET, res.job_id)
    early = await client.post(path, params={"token": right}, json={"md": "x"})
    assert early.status_code == 409 and early.headers["retry-after"] == "1"
    for wrong in (webhook_auth.callback_token(SECRET, uuid.uuid4()), right[:-2] + "xx"):
        r = await client.post(path, params={"token": wrong}, json={"md": "x"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert job_row(rt.dsn, res.job_id)["status"] == "uploaded"  # nothing changed


async def test_hint_needs_the_jobs_token_and_only_wakes_the_job(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    token = webhook_auth.callback_token(SECRET, uuid.uuid4())  # any unguessable value
    job = await waiting_job(rt, token=token)
    tokenless = await waiting_job(rt)  # sent to a parser without a token: fails closed
    before = job_row(rt.dsn, job["job_id"])
    refused = [
        (f"/webhooks/llamaparse/{job['job_id']}", {}, "missing_token"),
        (f"/webhooks/llamaparse/{job['job_id']}", {"token": token[:-2] + "xx"}, "bad_token"),
        (f"/webhooks/llamaparse/{uuid.uuid4()}", {"token": token}, "unknown_job"),
        ("/webhooks/llamaparse/not-a-uuid", {"token": token}, "unknown_job"),
        (f"/webhooks/llamaparse/{tokenless['job_id']}", {"token": token}, "bad_token"),
    ]
    for path, params, _ in refused:
        r = await client.post(path, params=params, json={"md": "forged"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert events(rt.dsn, "webhook.rejected") == []  # no token: anonymous, aggregated
    assert job_row(rt.dsn, job["job_id"]) == before
    assert job_row(rt.dsn, job["job_id"])["next_attempt_at"] > before["updated_at"]

    async with await psycopg.AsyncConnection.connect(rt.dsn, autocommit=True) as listener:
        await listener.execute(f'LISTEN "{jobs.CHANNEL}"')
        r = await client.post(
            f"/webhooks/llamaparse/{job['job_id']}", params={"token": token}, json={"md": "x"}
        )
        assert (r.status_code, r.json()) == (202, {"status": "woken"})
        # the workers are told at once, with the statement that made the job claimable
        assert (await anext(listener.notifies(timeout=10))).channel == jobs.CHANNEL
    woken = job_row(rt.dsn, job["job_id"])
    assert woken["status"] == "parse_queued" and woken["parsed_path"] is None  # only a hint
    assert woken["next_attempt_at"] <= woken["updated_at"]
    assert [(o, str(j)) for o, j in events(rt.dsn, "webhook.accepted")] == [
        ("woken", str(job["job_id"]))
    ]
    # the token may also come as a header
    r = await client.post(
        f"/webhooks/llamaparse/{job['job_id']}", headers={"x-docingest-callback-token": token}
    )
    assert r.status_code == 202
