"""Admission's signed lane for parse callbacks (api/admission.py): a callback whose URL token
verifies is served in a lane keyed by its job, so a parser calling back for many jobs at once
is never rate-limited as one anonymous address; a wrong token still is."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from docingest.api.main import create_app
from docingest.domain import webhook_auth
from tests.helpers import make_runtime, serving

BURST = 3  # the anonymous lane's burst per address in this test
CALLBACKS = 4 * BURST


async def test_a_burst_of_genuine_callbacks_is_not_rate_limited_and_forged_ones_are(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(
        dsn,
        tmp_path / "home",
        DOCINGEST_API_ANON_BURST=str(BURST),
        DOCINGEST_API_ANON_RATE_PER_SECOND="1",
    )
    jobs = [uuid.uuid4() for _ in range(CALLBACKS)]  # no such jobs: answered 401, not 429
    async with serving(create_app(rt, pool_size=4)) as url, httpx.AsyncClient(base_url=url) as c:
        genuine = [
            await c.post(
                f"/webhooks/llamaparse/{job}",
                params={"token": webhook_auth.callback_token(rt.webhook_secret, job)},
            )
            for job in jobs
        ]
        forged = [
            await c.post(f"/webhooks/llamaparse/{job}", params={"token": "x" * 43}) for job in jobs
        ]
    assert [r.status_code for r in genuine] == [401] * CALLBACKS
    statuses = [r.status_code for r in forged]
    assert statuses[:BURST] == [401] * BURST
    assert 429 in statuses[BURST:]
