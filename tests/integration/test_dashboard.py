"""`/admin/dashboard`: an admin sees the job funnel, throughput, failures by code, circuits and
the queue as one HTML page of counts (no filenames, ids or text); everyone else is refused,
and both the view and the refusals are audited."""

from __future__ import annotations

import re
import uuid

import httpx
import psycopg

from docingest.bootstrap import Runtime
from tests.conftest import EXAMPLES
from tests.helpers import auth

SECRET_NAME = "member-philomena-crabtree-claim.pdf"  # made up; must never reach the page


def row_count(page: str, section: str, key: str) -> int | None:
    """The count in the row `data-key=key` of the page section with id `section`."""
    body = re.search(rf'<section id="{section}">(.*?)</section>', page, re.S)
    assert body is not None, f"no section {section}"
    m = re.search(rf'data-key="{re.escape(key)}"><td>[^<]*</td><td class="n">(\d+)</td>', body[1])
    return int(m[1]) if m else None


def tile(page: str, tile_id: str) -> str:
    m = re.search(rf'<div id="{tile_id}">[^<]*<b>([^<]*)</b>', page)
    assert m is not None, f"no tile {tile_id}"
    return m[1]


def audit_rows(dsn: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT actor, action, outcome FROM docingest.events"
            " WHERE action IN ('dashboard.read', 'auth.refused') ORDER BY event_id"
        ).fetchall()
    return [(str(a), str(b), c) for a, b, c in rows]


async def test_admin_sees_counts_others_are_refused(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    user = uuid.uuid4()
    job_ids = []
    for pdf in sorted(EXAMPLES.glob("*.pdf")):
        files = {"file": (SECRET_NAME, pdf.read_bytes(), "application/pdf")}
        r = await client.post("/v1/documents", files=files, headers=auth(rt, user))
        assert r.status_code == 202, r.text
        job_ids.append(r.json()["job_id"])
    done, failed, waiting = job_ids
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE docingest.upload_jobs SET status = 'complete', updated_at = now()"
            " WHERE job_id = %s",
            (done,),
        )
        conn.execute(
            "UPDATE docingest.upload_jobs SET status = 'failed_parse',"
            ' last_error = \'{"code": "corrupt_pdf", "message": "x"}\' WHERE job_id = %s',
            (failed,),
        )
        conn.execute(
            "UPDATE docingest.upload_jobs SET next_attempt_at = now() - interval '90 s'"
            " WHERE job_id = %s",
            (waiting,),
        )
        conn.execute(
            "INSERT INTO docingest.circuit_breakers (service, state, failures, reason)"
            " VALUES ('embedder', 'open', 5, 'quota_exhausted')"
        )

    admin = uuid.uuid4()
    r = await client.get("/admin/dashboard", headers=auth(rt, admin, admin=True))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert row_count(page, "funnel", "uploaded") == 1
    assert row_count(page, "funnel", "complete") == 1
    assert row_count(page, "funnel", "failed_parse") == 1
    assert row_count(page, "funnel", "embedding_in_progress") == 0
    assert row_count(page, "failures", "corrupt_pdf") == 1
    assert tile(page, "completed-5m") == tile(page, "completed-60m") == "1"
    assert tile(page, "queue-depth") == "1"
    assert 90 <= int(tile(page, "oldest-age")) < 150
    assert re.search(r'data-key="embedder"><td>embedder</td><td class="open">open</td>', page)
    # counts only: no filename, user, document or job id; nothing fetched from elsewhere
    for secret in (SECRET_NAME, str(user), *job_ids):
        assert secret not in page
    assert not re.search(r"<script|<link|src=|https?://", page)

    refused = [
        await client.get("/admin/dashboard", headers=auth(rt, user)),
        await client.get("/admin/dashboard"),
    ]
    assert [x.status_code for x in refused] == [403, 401]
    assert audit_rows(dsn) == [  # the anonymous 401 is aggregated (api/refusals.py)
        (f"user:{admin}", "dashboard.read", "ok"),
        (f"user:{user}", "auth.refused", "forbidden"),
    ]
