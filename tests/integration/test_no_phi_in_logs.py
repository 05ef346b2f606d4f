"""No PHI outside the database: logs, metrics (API /metrics and the worker registry) and
every file under DOCINGEST_HOME carry ids and codes only, never document text, filenames,
a member's name or tokens.

DOCINGEST_HOME is scanned except the embedded database's data directory (`pg/`):
Postgres stores chunk text in clear because the database holds it; encrypting it at rest
is the job of the disk or the Postgres host (docs/security.md). Here the database is the
test server outside DOCINGEST_HOME, and the scan skips `pg/` for the embedded layout.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import string
import uuid
from pathlib import Path

import httpx
import prometheus_client
import pytest

from docingest.api.main import create_app
from docingest.logs import JsonFormatter
from docingest.store.db import open_pool
from docingest.testing.pdfgen import assemble_pdf, text_stream
from docingest.worker.runner import run_worker
from tests.conftest import CORPUS, EXAMPLES
from tests.helpers import auth, make_runtime, upload

DATABASE_DIR = "pg"  # the embedded Postgres data directory under DOCINGEST_HOME


def _member_name() -> str:
    """A made-up member name no document, log template or metric could hold by chance."""
    suffix = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    return f"Zebulon Quackenbush{suffix.capitalize()}"


def _files_holding(home: Path, needle: bytes) -> list[str]:
    hits = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        rel = path.relative_to(home)
        if rel.parts[0] == DATABASE_DIR:
            continue
        if needle.lower() in str(rel).encode().lower() or needle in path.read_bytes():
            hits.append(str(rel))
    return hits


async def test_no_phi_in_logs_metrics_or_files(
    dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    member = _member_name()
    card = tmp_path / f"{member.replace(' ', '_')}_member_card.pdf"
    card.write_bytes(
        assemble_pdf(
            [
                text_stream(
                    [
                        f"Member name: {member}",
                        "Member id W123456789, group 004321, plan Silver PPO",
                        "Your deductible is 1500 dollars per calendar year",
                    ]
                )
            ]
        )
    )
    secret_name = tmp_path / "Jane_Doe_SSN_123-45-6789.pdf"
    shutil.copy(EXAMPLES / "glossary_cms_uniform_health_coverage.pdf", secret_name)
    files = [card, secret_name]
    encrypted = CORPUS / "hostile" / "encrypted_aes256_r6_userpw.pdf"
    if encrypted.exists():  # a failing document logs too
        files.append(encrypted)
    home = tmp_path / "home"
    rt = make_runtime(dsn, home)
    user = uuid.uuid4()
    caplog.set_level(logging.DEBUG)
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            for f in files:
                await upload(conn, rt, user, f)
        await run_worker(rt, once=True, handle_signals=False)
    finally:
        await pool.close()

    app = create_app(rt, pool_size=2)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            found = await client.post(
                "/v1/search", headers=auth(rt, user), json={"query": member, "k": 3}
            )
            api_metrics = (await client.get("/metrics")).text
    assert found.status_code == 200
    assert member in found.json()["results"][0]["text"]  # the name did reach the database
    worker_metrics = prometheus_client.generate_latest().decode()

    logs = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert logs  # the worker did log
    assert "docingest_" in api_metrics and "docingest_worker_" in worker_metrics
    needles = (
        member,
        member.split()[1],
        "W123456789",
        "Jane_Doe",
        "123-45-6789",
        "Coinsurance",
        "Deductible",
        "Uniform Glossary",
        rt.jwt_secret,
    )
    for where, text in (("logs", logs), ("api", api_metrics), ("worker", worker_metrics)):
        for needle in needles:
            assert needle.lower() not in text.lower(), (where, needle)
    assert any(home.rglob("*"))  # blobs, key and secrets were written there
    for needle in (member, "Jane_Doe", "Deductible", "Uniform Glossary"):
        assert _files_holding(home, needle.encode()) == [], needle
