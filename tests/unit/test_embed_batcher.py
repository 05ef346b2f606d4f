"""The worker's request stream across jobs (worker/embed_batcher.py), against a recording gate:
when a request that is not full may go, one request per shared text, refusals split until
the refused text is found, failures reach every waiting job."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from docingest.domain.errors import Deferred, ErrorCode, TransientError
from docingest.worker.embed_batcher import Answer, EmbeddingBatcher, Text
from docingest.worker.embed_gate import EmbeddingGate, Sent


class RecordingGate:
    """Answers every text with a vector, refuses requests holding 'bad', can fail once."""

    max_request_tokens = 1_000
    price = None

    def __init__(self, fail: Exception | None = None) -> None:
        self.requests: list[list[str]] = []
        self.fail = fail

    async def send(self, texts: Sequence[str], counts: Sequence[int]) -> Sent:
        self.requests.append(list(texts))
        await asyncio.sleep(0)  # an answer is never synchronous
        if self.fail is not None:
            raise self.fail
        if any("bad" in t for t in texts):
            return Sent(len(texts), None, 0, 0.0)
        vectors = [np.full(4, len(t), dtype=np.float32) for t in texts]
        return Sent(len(texts), vectors, sum(counts), 0.0)


def _texts(*names: str) -> list[Text]:
    return [Text(f"sha-{n}", n, 10) for n in names]


def _batcher(gate: RecordingGate, **kw: Any) -> EmbeddingBatcher:
    return EmbeddingBatcher(cast(EmbeddingGate, gate), max_inputs=4, **kw)


async def test_partial_request_waits_for_every_job_and_for_upstream() -> None:
    gate, busy = RecordingGate(), [True]
    batcher = _batcher(gate, upstream_busy=lambda: busy[0])
    a, b = batcher.join(), batcher.join()
    a.more = b.more = False
    fa = batcher.submit(a, _texts("a1", "a2"))
    wait_a = asyncio.create_task(batcher.wait(a, fa))
    fb = batcher.submit(b, _texts("b1"))
    await asyncio.sleep(0.01)
    assert gate.requests == []  # b has not started waiting, and a slot is still busy
    wait_b = asyncio.create_task(batcher.wait(b, fb))
    await asyncio.sleep(0.01)
    assert gate.requests == []  # upstream still busy
    busy[0] = False
    batcher.poke()
    await asyncio.gather(wait_a, wait_b)
    assert gate.requests == [["a1", "a2", "b1"]]  # one request for both jobs


async def test_a_full_request_goes_at_once_and_a_shared_text_is_sent_once() -> None:
    gate = RecordingGate()
    batcher = _batcher(gate, upstream_busy=lambda: True)
    a, b = batcher.join(), batcher.join()
    fa = batcher.submit(a, _texts("x", "y", "z"))
    fb = batcher.submit(b, _texts("z", "w"))  # fills 4 distinct texts: full
    answers_a, answers_b = await asyncio.gather(batcher.wait(a, fa), batcher.wait(b, fb))
    assert gate.requests == [["x", "y", "z", "w"]]
    assert [x.paid for x in answers_a] == [True, True, True]
    assert [x.paid for x in answers_b] == [False, True]  # a paid for z
    assert answers_a[2].vector is answers_b[0].vector
    c = batcher.join()
    c.more = False
    # answered but not yet stored by a and b: c gets it without paying (its reuse lookup
    # cannot see vectors that are not committed yet)
    again = await batcher.wait(c, batcher.submit(c, _texts("z")))
    assert again[0].paid is False and len(gate.requests) == 1
    for owner in (a, b, c):
        batcher.stored(owner, _texts("z"))
    # stored by everyone: the database answers from now on, the batcher keeps nothing
    await batcher.wait(c, batcher.submit(c, _texts("z")))
    assert gate.requests[-1] == ["z"] and len(gate.requests) == 2


async def test_a_text_stored_during_another_jobs_reuse_lookup_is_answered_not_resent() -> None:
    """Job b's reuse lookup took its snapshot before job a committed "z"; a stores and
    releases it before b submits what its lookup did not find: b is answered, not billed."""
    gate = RecordingGate()
    batcher = _batcher(gate, upstream_busy=lambda: True)
    a, b = batcher.join(), batcher.join()
    a.more = b.more = False
    await batcher.wait(a, batcher.submit(a, _texts("x", "y", "z", "w")))
    with batcher.lookup():  # b's lookup is under way (it cannot see a's vectors)
        batcher.stored(a, _texts("x", "y", "z", "w"))  # a commits and lets go meanwhile
        again = await batcher.wait(b, batcher.submit(b, _texts("z")))
    assert again[0].paid is False and len(gate.requests) == 1
    batcher.stored(b, _texts("z"))
    # no lookup under way and no holder left: the batcher keeps nothing, the database answers
    with batcher.lookup():
        futures = batcher.submit(b, _texts("x", "y", "z", "w"))
    await batcher.wait(b, futures)
    assert len(gate.requests) == 2


async def test_a_refused_text_is_found_by_splitting_and_refused_only_to_its_waiter() -> None:
    gate = RecordingGate()
    batcher = _batcher(gate)
    a, b = batcher.join(), batcher.join()
    a.more = b.more = False
    fa = batcher.submit(a, _texts("ok1", "bad"))
    fb = batcher.submit(b, _texts("ok2", "ok3"))
    answers_a, answers_b = await asyncio.gather(batcher.wait(a, fa), batcher.wait(b, fb))
    assert answers_a[0].vector is not None and answers_a[1].vector is None
    assert all(x.vector is not None for x in answers_b)
    assert gate.requests[0] == ["ok1", "bad", "ok2", "ok3"] and len(gate.requests) == 5


async def test_a_failed_request_fails_every_job_waiting_on_it() -> None:
    gate = RecordingGate(fail=TransientError(ErrorCode.EMBEDDING_UNAVAILABLE, "503"))
    batcher = _batcher(gate)
    a, b = batcher.join(), batcher.join()
    a.more = b.more = False
    fa, fb = batcher.submit(a, _texts("p")), batcher.submit(b, _texts("q"))
    results = await asyncio.gather(batcher.wait(a, fa), batcher.wait(b, fb), return_exceptions=True)
    assert all(isinstance(r, TransientError) for r in results)
    assert gate.requests == [["p", "q"]]


async def test_a_partial_request_goes_after_max_wait_while_upstream_stays_busy() -> None:
    gate = RecordingGate()
    batcher = _batcher(gate, upstream_busy=lambda: True, max_wait_s=0.05)
    a = batcher.join()
    answers = await asyncio.wait_for(batcher.wait(a, batcher.submit(a, _texts("t"))), 5)
    assert answers[0].vector is not None and gate.requests == [["t"]]


async def test_a_job_that_leaves_withdraws_its_queued_texts() -> None:
    gate = RecordingGate()
    batcher = _batcher(gate, upstream_busy=lambda: False)
    a, b = batcher.join(), batcher.join()
    futures = batcher.submit(a, _texts("gone"))
    batcher.leave(a)
    assert futures[0].cancelled()
    b.more = False
    await batcher.wait(b, batcher.submit(b, _texts("kept")))
    assert gate.requests == [["kept"]]  # the withdrawn text was never sent
    await batcher.aclose()


async def test_settling_withdraws_what_is_queued_and_waits_for_what_is_out() -> None:
    gate = RecordingGate()
    batcher = _batcher(gate, upstream_busy=lambda: True, max_in_flight=1)
    a = batcher.join()
    out = batcher.submit(a, _texts("o1", "o2", "o3", "o4"))
    queued = batcher.submit(a, _texts("q1"))
    batcher.poke()  # the full request goes; q1 waits for the one request slot
    await batcher.settle(a, [*out, *queued], timeout_s=5)
    assert all(f.done() and f.result().vector is not None for f in out)
    assert queued[0].cancelled() and not a.more
    assert gate.requests == [["o1", "o2", "o3", "o4"]]  # the withdrawn text was never sent
    await batcher.aclose()


class HeldGate(RecordingGate):
    """Answers the first request at once and holds every later one until `release` is set
    (or it is cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, texts: Sequence[str], counts: Sequence[int]) -> Sent:
        if self.requests:
            self.held.set()
            await self.release.wait()
        return await super().send(texts, counts)


async def _stopping_with_one_request_out(
    gate: HeldGate, in_flight_s: float
) -> tuple[EmbeddingBatcher, dict[str, list[asyncio.Future[Answer]]]]:
    """One request answered, a full one out (held by the gate), one text queued behind it;
    then `stop_waiting`, and one more submit."""
    batcher = _batcher(gate, upstream_busy=lambda: True, max_in_flight=1)
    a = batcher.join()
    answered = batcher.submit(a, _texts("a1", "a2", "a3", "a4"))
    await batcher.wait(a, answered)  # the first request was answered
    out = batcher.submit(a, _texts("o1", "o2", "o3", "o4"))  # full: goes, and is held
    queued = batcher.submit(a, _texts("q1"))  # waits for the one request slot
    batcher.poke()
    await gate.held.wait()
    batcher.stop_waiting(in_flight_s)
    later = batcher.submit(a, _texts("later"))
    return batcher, {"answered": answered, "out": out, "queued": [*queued, *later]}


async def test_stop_waiting_gives_up_what_is_not_sent_and_awaits_what_is_out() -> None:
    gate = HeldGate()
    batcher, futures = await _stopping_with_one_request_out(gate, in_flight_s=60)
    assert all(isinstance(f.exception(), Deferred) for f in futures["queued"])
    assert not any(f.done() for f in futures["out"])
    gate.release.set()  # the provider answers the request that was out
    await asyncio.wait(futures["out"])
    assert all(f.result().vector is not None for f in [*futures["answered"], *futures["out"]])
    # q1 and "later" were never sent
    assert gate.requests == [["a1", "a2", "a3", "a4"], ["o1", "o2", "o3", "o4"]]
    await batcher.aclose()


async def test_stop_waiting_gives_up_a_request_out_that_does_not_come_back_in_time() -> None:
    gate = HeldGate()  # never released
    batcher, futures = await _stopping_with_one_request_out(gate, in_flight_s=0.05)
    await asyncio.wait(futures["out"], timeout=10)  # given up by the batcher's own deadline
    assert all(isinstance(f.exception(), Deferred) for f in [*futures["out"], *futures["queued"]])
    assert all(f.result().vector is not None for f in futures["answered"])
    await batcher.aclose()
