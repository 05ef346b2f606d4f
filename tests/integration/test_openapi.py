"""`/openapi.json` documents every body the API answers with: each route's success body is a
named model, each error status it declares is the error body of DESIGN.md §4, and live
answers pass through those models (they forbid unknown fields)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from docingest.bootstrap import Runtime
from tests.helpers import auth

_ROUTES = {
    ("/v1/documents", "post"): ("202", "UploadAccepted"),
    ("/v1/documents", "get"): ("200", "DocumentPage"),
    ("/v1/documents/{document_id}", "get"): ("200", "DocumentDetail"),
    ("/v1/jobs/{job_id}", "get"): ("200", "JobBody"),
    ("/jobs/{document_id}", "get"): ("200", "JobBody"),
    ("/v1/jobs/{job_id}/retry", "post"): ("202", "JobBody"),
    ("/jobs/{document_id}/retry", "post"): ("202", "JobBody"),
    ("/jobs/{document_id}/advance", "post"): ("200", "JobBody"),
    ("/v1/search", "post"): ("200", "SearchResults"),
    ("/webhooks/llamaparse", "post"): ("200", "WebhookAck"),
    ("/webhooks/llamaparse/{job_id}", "post"): ("200", "WebhookAck"),
    ("/healthz", "get"): ("200", "Health"),
    ("/readyz", "get"): ("200", "Ready"),
}


def _ref(response: dict[str, Any]) -> str:
    schema = response["content"]["application/json"]["schema"]
    return str(schema["$ref"]).rsplit("/", 1)[-1]


async def test_every_route_documents_its_success_and_error_bodies(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    for (path, method), (status, model) in _ROUTES.items():
        responses = spec["paths"][path][method]["responses"]
        assert _ref(responses[status]) == model, (path, method)
        errors = {s: r for s, r in responses.items() if s.startswith(("4", "5"))}
        if path.startswith(("/v1", "/jobs", "/webhooks")):
            assert {"401", "404"} & errors.keys(), (path, method)
        for s, r in errors.items():
            assert _ref(r) in ("ErrorBody", "Unavailable"), (path, method, s)
    error = spec["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}
    job = spec["components"]["schemas"]["JobBody"]
    assert set(job["required"]) == {
        "job_id", "document_id", "status", "progress", "retry_count", "last_error",
        "created_at", "updated_at",
    }  # fmt: skip
    assert "complete" in spec["components"]["schemas"]["JobStatus"]["enum"]


async def test_live_answers_pass_through_their_models(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    headers = auth(rt, uuid.uuid4())
    listed = await client.get("/v1/documents", headers=headers)
    assert listed.status_code == 200 and listed.json()["documents"] == []
    found = await client.post("/v1/search", json={"query": "copay", "k": 3}, headers=headers)
    assert found.status_code == 200 and found.json() == {"results": []}
    missing = await client.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"code", "message"}
    assert (await client.get("/healthz")).json() == {"status": "ok"}
