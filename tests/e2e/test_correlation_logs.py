"""One correlation id follows a document from upload to completion across processes: the API
logs it on the upload line (and answers it in `X-Correlation-Id`), the job row keeps it, and
the worker's JSON lines about the job, up to its completion, carry it too."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from docingest.api.audit import CORRELATION_NAMESPACE
from docingest.api.auth import mint_token
from docingest.testing.procs import free_port, run_process
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, run_cli, stack_env

PDF = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
SECRET_NAME = "member-ottoline-vavasour-claim.pdf"  # made up; must never reach a log


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object (the services' log format)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_upload_and_completion_lines_share_the_correlation_id(dsn: str, tmp_path: Path) -> None:
    env = stack_env(dsn, tmp_path / "home")
    port = free_port()
    api_log = tmp_path / "api.log"
    sent = str(uuid.uuid4())
    user = uuid.uuid4()
    # the caller's id, namespaced to the caller (api/audit.py): the response says which
    cid = str(uuid.uuid5(CORRELATION_NAMESPACE, f"{user}:{sent}"))
    args = [sys.executable, "-m", "docingest", "api", "--port", str(port)]
    with (
        api_log.open("wb") as sink,
        run_process(
            args, env=env, ready_url=f"http://127.0.0.1:{port}/readyz", timeout_s=60, stderr=sink
        ),
    ):
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/documents",
            files={"file": (SECRET_NAME, PDF.read_bytes(), "application/pdf")},
            headers={
                "Authorization": f"Bearer {mint_token(JWT_SECRET, user)}",
                "X-Correlation-Id": sent,
            },
            timeout=30,
        )
        assert r.status_code == 202, r.text
        assert r.headers["x-correlation-id"] == cid
    job_id = r.json()["job_id"]
    worker = run_cli(env, "worker", "--once", "--concurrency", "1")
    assert worker.returncode == 0, worker.stderr[-2000:]

    api_lines = json_lines(api_log.read_text())
    worker_lines = json_lines(worker.stderr)
    [uploaded] = [x for x in api_lines if x.get("action") == "document_upload"]
    assert (uploaded["correlation_id"], uploaded["job_id"]) == (cid, job_id)
    [finished] = [x for x in worker_lines if x.get("action") == "job_finished"]
    assert (finished["correlation_id"], finished["job_id"]) == (cid, job_id)
    assert finished["status"] == "complete"
    for text in (api_log.read_text(), worker.stderr):
        assert SECRET_NAME not in text
