"""Locust users for `bench/load_test.py`, which runs this file headless and reads the JSON it
writes at the end (path in LOAD_RESULTS); not meant to be run on its own.

Each user is its own docingest user (a token minted with LOAD_JWT_SECRET). It uploads a small
PDF, then polls `GET /v1/jobs/{id}` until the job is terminal, and again. Most PDFs are
generated with a unique reference number (so they are not deduplicated); one in ten is one of
`examples/*.pdf` (real SBCs, deduplicated per user after the first). A 429/503 is retried
after its Retry-After, as a well-behaved client would.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from locust import FastHttpUser, events, task

from docingest.domain.states import JobStatus
from docingest.security.bearer_tokens import mint_token
from docingest.testing.pdfgen import assemble_pdf, text_stream

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = [p.read_bytes() for p in sorted((REPO / "examples").glob("*.pdf"))]
EXAMPLE_SHARE = 0.1
POLL_INTERVAL_S = 0.5
BOUNDARY = "docingest-load-boundary"
UPLOAD = "POST /v1/documents"
STATUS = "GET /v1/jobs/{id}"

SENTENCES = (
    "Your plan pays for covered services after you meet the annual deductible.",
    "Preventive care is covered at no cost when you use an in-network provider.",
    "Specialist visits require a copayment of forty dollars per visit.",
    "Emergency room care is covered in and out of network after coinsurance.",
    "Prior authorization is required for imaging such as CT and MRI scans.",
    "Generic drugs on tier one cost ten dollars for a thirty day supply.",
    "The out-of-pocket limit is the most you pay during a policy period.",
    "Out-of-network providers may bill you for the difference in charges.",
    "Mental health outpatient services are covered like other office visits.",
    "Hospital stays require a facility fee and physician fees after deductible.",
)

counts: Counter[str] = Counter()
accepted: list[dict[str, Any]] = []
status_ms: list[float] = []
window: dict[str, float] = {}


def unique_pdf(rng: random.Random) -> bytes:
    """A one-page text PDF with a unique reference (so uploads are not deduplicated)."""
    lines = [f"Summary of Benefits - reference {uuid.uuid4()}"]
    lines += [rng.choice(SENTENCES) for _ in range(rng.randint(15, 40))]
    return assemble_pdf([text_stream(lines)])


def multipart(pdf: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="load.pdf"'
        "\r\nContent-Type: application/pdf\r\n\r\n"
    )
    return head.encode() + pdf + f"\r\n--{BOUNDARY}--\r\n".encode()


def retry_after(headers: Any) -> float:
    raw = headers.get("Retry-After") if headers else None
    return float(raw) if raw and raw.isdigit() else 1.0


class Uploader(FastHttpUser):
    def wait_time(self) -> float:
        return 0.0  # the poll loop paces each user

    def on_start(self) -> None:
        self.rng = random.Random()
        token = mint_token(os.environ["LOAD_JWT_SECRET"], uuid.uuid4(), ttl_s=24 * 3600)
        self.auth = {"Authorization": f"Bearer {token}"}

    @task
    def upload_then_poll(self) -> None:
        pdf = (
            self.rng.choice(EXAMPLES) if self.rng.random() < EXAMPLE_SHARE else unique_pdf(self.rng)
        )
        job = self.upload(multipart(pdf))
        if job is not None:
            self.poll(job)

    def upload(self, body: bytes) -> str | None:
        headers = {**self.auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        while True:
            r = self.client.post("/v1/documents", data=body, headers=headers, name=UPLOAD)
            counts[f"upload {r.status_code}"] += 1
            if r.status_code == 202:
                answer = r.json()
                accepted.append(answer)
                return str(answer["job_id"])
            if r.status_code not in (429, 503):
                return None
            time.sleep(retry_after(r.headers))  # gevent-patched: yields to other users

    def poll(self, job_id: str) -> None:
        while True:
            started = time.perf_counter()
            r = self.client.get(f"/v1/jobs/{job_id}", headers=self.auth, name=STATUS)
            elapsed_ms = (time.perf_counter() - started) * 1000
            counts[f"status {r.status_code}"] += 1
            if r.status_code == 200:
                status_ms.append(elapsed_ms)
                if JobStatus(r.json()["status"]).is_terminal:
                    return
            elif r.status_code not in (429, 503):
                return
            time.sleep(POLL_INTERVAL_S if r.status_code == 200 else retry_after(r.headers))


@events.test_start.add_listener
def _started(**_: Any) -> None:
    window["start"] = time.monotonic()


@events.test_stop.add_listener
def _stopped(**_: Any) -> None:
    window["stop"] = time.monotonic()
    result = {
        "seconds": window["stop"] - window.get("start", window["stop"]),
        "counts": dict(counts),
        "accepted": accepted,
        "status_ms": status_ms,
    }
    Path(os.environ["LOAD_RESULTS"]).write_text(json.dumps(result), encoding="utf-8")
