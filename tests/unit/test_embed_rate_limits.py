"""Rate-limit hints of the embedding provider: parsing the `x-ratelimit-*` durations, and
each `embed` call getting the hints of its own response (a result, not shared state)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from docingest.clients.embedders import OpenAIEmbedder, parse_duration
from tests.unit.test_embedders import BASE, KNOWN, ok_body


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("6m0s", 360.0),
        ("1h1m1s", 3661.0),
        ("0s", 0.0),
        ("2", 2.0),
        ("-1", None),
        ("soon", None),
        ("1s junk", None),
        (None, None),
    ],
)
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    result = parse_duration(text)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds)


async def test_concurrent_calls_each_get_their_own_rate_limit_hints() -> None:
    """Two requests on one shared embedder: the first is answered last, so a client that
    kept 'the last headers' as state would hand the first caller the second's hints."""
    first_may_answer = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        (text,) = json.loads(request.content)["input"]
        if text == "first":
            await first_may_answer.wait()
            remaining, reset = "0", "20s"
        else:
            first_may_answer.set()
            remaining, reset = "41", "1s"
        headers = {"x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": reset}
        return httpx.Response(200, json=ok_body(KNOWN[:1]), headers=headers)

    emb = OpenAIEmbedder(BASE, "sk-test", dimensions=4, transport=httpx.MockTransport(handler))
    first, second = await asyncio.gather(emb.embed(["first"]), emb.embed(["second"]))
    await emb.aclose()
    assert first.rate_limit is not None and second.rate_limit is not None
    assert (first.rate_limit.remaining_requests, first.rate_limit.reset_requests_s) == (0, 20.0)
    assert (second.rate_limit.remaining_requests, second.rate_limit.reset_requests_s) == (41, 1.0)
    assert not hasattr(emb, "last_rate_limit")  # nothing shared left to read
