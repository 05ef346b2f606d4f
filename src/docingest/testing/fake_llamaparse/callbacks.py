"""Callbacks when a job ends: the native v1 body (`callback` mode) or the signed seed
callback (`relay` mode), with drop/duplicate/hold/reorder faults and a webhook sender's
retries on non-2xx answers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx

from docingest.domain import seed_callback, webhook_auth
from docingest.testing.fake_llamaparse.formats import pages, plain
from docingest.testing.fake_llamaparse.state import Delivery, FakeJob, FakeState

PARSER_NAME = "fake-llamaparse"
PARSER_VERSION = "1"
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_DELIVERY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_TLS = httpx.create_ssl_context()  # built once: each build costs ~25 ms of CPU


def delivery_for(state: FakeState, job: FakeJob) -> Delivery | None:
    if not job.webhook_url or state.faults.mode == "none":
        return None
    if state.faults.mode == "callback":
        native = {
            "txt": plain(job.markdown),
            "md": job.markdown,
            "json": pages(job.markdown) if job.markdown else [],
            "images": [],
        }
        return Delivery(job.webhook_url, json.dumps(native).encode(), None, None)
    if job.status != "SUCCESS" or not (job.job_id and job.document_id and state.webhook_secret):
        return None
    origin = httpx.URL(job.webhook_url).copy_with(path="/webhooks/llamaparse", query=None)
    job_uuid = uuid.UUID(job.job_id)
    body = seed_callback.build(
        job_uuid, uuid.UUID(job.document_id), job.markdown, PARSER_NAME, PARSER_VERSION
    )
    key = webhook_auth.job_signing_key(state.webhook_secret, job_uuid)
    return Delivery(str(origin), body, f"msg_{uuid.uuid4().hex}", key)


async def dispatch(state: FakeState, delivery: Delivery) -> None:
    if state.take("drop_callbacks_next"):
        state.stats["callbacks_dropped"] += 1
        return
    copies = 2 if state.take("duplicate_callbacks_next") else 1
    batch = [delivery] * copies
    if state.faults.hold_callbacks > 0:
        state.held.extend(batch)
        if len(state.held) < state.faults.hold_callbacks:
            return
        batch, state.held = list(reversed(state.held)), []
        state.faults.hold_callbacks = 0
        state.injected.count("reordered_callbacks", len(batch))
    for item in batch:
        await _send(state, item)


async def _send(state: FakeState, delivery: Delivery) -> None:
    async with httpx.AsyncClient(timeout=15, verify=_TLS) as client:
        for attempt in range(len(_DELIVERY_DELAYS_S) + 1):
            await asyncio.sleep(state.faults.callback_delay_ms / 1000)
            headers = {"content-type": "application/json"}
            if delivery.key is not None and delivery.webhook_id is not None:
                ts = int(time.time())
                headers["webhook-id"] = delivery.webhook_id
                headers["webhook-timestamp"] = str(ts)
                headers["webhook-signature"] = webhook_auth.sign(
                    delivery.key, delivery.webhook_id, ts, delivery.body
                )
            state.stats["callbacks_attempted"] += 1
            try:
                response = await client.post(delivery.url, content=delivery.body, headers=headers)
            except httpx.TransportError as exc:
                state.count("callback_status_counts", type(exc).__name__)
                status, wait = 0, None
            else:
                status = response.status_code
                state.count("callback_status_counts", status)
                wait = _retry_after(response)
            if 200 <= status < 300:
                state.stats["callbacks_delivered"] += 1
                return
            if status and status not in _RETRY_STATUSES:
                return
            if attempt < len(_DELIVERY_DELAYS_S):
                await asyncio.sleep(wait if wait is not None else _DELIVERY_DELAYS_S[attempt])


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    return min(float(raw), 5.0) if raw.isdigit() else None
