"""The shared HTTP retry loop (clients/http_retry.py) and both clients that use it."""

from __future__ import annotations

import httpx
import pytest

from docingest.clients.http_retry import Backoff, Retryable, with_retries
from docingest.clients.llamaparse import LlamaParseClient
from docingest.domain.errors import ErrorCode, PermanentError, TransientError

BACKOFF = Backoff(max_attempts=4, initial_delay_s=1.0, max_delay_s=3.0, max_inline_wait_s=30.0)


class Script:
    """An attempt that raises the scripted outcomes in order, then returns 'ok'."""

    def __init__(self, *outcomes: Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.outcomes:
            raise self.outcomes.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def run(script: Script, sleeps: Sleeps, backoff: Backoff = BACKOFF) -> str:
    return await with_retries(script, backoff, what="test call", sleep=sleeps, jitter=lambda: 1.0)


async def test_backoff_doubles_up_to_its_cap_and_a_hint_replaces_it() -> None:
    sleeps = Sleeps()
    script = Script(Retryable("a"), Retryable("b"), Retryable("c", retry_after=0.2))
    assert await run(script, sleeps) == "ok"
    assert script.calls == 4
    assert sleeps.calls == [0.75, 1.5, 0.2]  # 1 s and 2 s less 25 % jitter, then the hint


async def test_the_delay_never_exceeds_the_cap() -> None:
    assert BACKOFF.delay(10, None, 0.0) == 3.0
    assert BACKOFF.delay(0, 31.0, 0.0) == 1.0  # a hint above the inline cap is not slept


async def test_exhausted_attempts_raise_the_last_failure_with_its_hint() -> None:
    sleeps = Sleeps()
    last = Retryable("HTTP 429", retry_after=2.0, throttled=True)
    script = Script(Retryable("x"), Retryable("y"), Retryable("z"), last)
    with pytest.raises(Retryable) as info:
        await run(script, sleeps)
    assert info.value is last
    assert script.calls == 4 and len(sleeps.calls) == 3


async def test_a_long_hint_stops_at_once_for_the_scheduler() -> None:
    sleeps = Sleeps()
    script = Script(Retryable("HTTP 503", retry_after=90.0))
    with pytest.raises(Retryable) as info:
        await run(script, sleeps)
    assert info.value.retry_after == 90.0
    assert script.calls == 1 and sleeps.calls == []


async def test_other_errors_pass_through_without_a_retry() -> None:
    sleeps = Sleeps()
    script = Script(PermanentError(ErrorCode.PARSER_REJECTED, "HTTP 400"))
    with pytest.raises(PermanentError):
        await run(script, sleeps)
    assert script.calls == 1 and sleeps.calls == []


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError):
        Backoff(max_attempts=0, initial_delay_s=1, max_delay_s=1, max_inline_wait_s=1)


async def test_llamaparse_retries_through_the_shared_loop() -> None:
    answers = [
        httpx.Response(503),
        httpx.Response(429, headers={"retry-after": "2"}),
        httpx.Response(200, json={"status": "SUCCESS"}),
    ]
    sleeps = Sleeps()
    client = LlamaParseClient(
        "https://parse.example.test",
        "llx-test",
        transport=httpx.MockTransport(lambda request: answers.pop(0)),
        sleep=sleeps,
        jitter=lambda: 0.0,
    )
    status = await client.status("job-1")
    assert status is not None and status.state == "success"
    assert sleeps.calls == [1.0, 2.0]


async def test_llamaparse_gives_up_as_a_transient_error_carrying_the_hint() -> None:
    client = LlamaParseClient(
        "https://parse.example.test",
        "llx-test",
        transport=httpx.MockTransport(
            lambda request: httpx.Response(503, headers={"retry-after": "120"})
        ),
        sleep=Sleeps(),
    )
    with pytest.raises(TransientError) as info:
        await client.markdown("job-1")
    assert info.value.code is ErrorCode.PARSER_UNAVAILABLE
    assert info.value.retry_after == 120.0
