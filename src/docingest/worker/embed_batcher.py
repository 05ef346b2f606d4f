"""One embedding request stream per worker process, filled from every job it holds.

Each embedding job hands its missing texts here (`submit`) and waits for them (`wait`); the
batcher cuts the queue into requests of at most `max_inputs` inputs and the gate's token cap,
oldest first, so many small documents share requests instead of each sending its own. A text
already queued or in flight (same chunk_sha, any job) is sent once and answered to every job
waiting for it. Each job still stores its own vectors and commits its own progress; the
batcher only answers.

When to send a request that is not full (the only thing deciding how many requests a queue
of small documents costs): when no more input can come without one. That is when every job
held here is waiting for the batcher, no job of this worker is in a stage before embedding
(`upstream_busy`, given by the BaseWorker: a slot parsing or chunking, or a claim that may
still find work), and no request in flight can lead a job to submit its next window. As a
bound on latency, a partial request also goes once its oldest text has waited
`max_wait_s`. So with many small documents queued a worker sends ceil(new texts / 256)
requests plus at most one partial one at the end.

Failures: a refused request (HTTP 400) is split in halves until the refused text(s) are
found, and only the jobs waiting for a refused text see it refused; anything else the gate
raises (circuit open, budget, transient, permanent) is raised in every job waiting on that
request, which handles it as its own failure (wait, retry, fail). A job that leaves (lease
lost, cancelled) withdraws its queued texts.

Shutdown: shortly before the worker's grace period ends (`stop_waiting`), every text not
sent yet is given up with `Deferred`; requests already out are still awaited for a little
longer (they are paid for either way), then their texts are given up too. So each job stores
what was answered and gives its job back, rather than being cancelled with paid answers it
had not stored yet, and the next worker pays only for what was never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from docingest.clients.embedders import Vector
from docingest.domain.errors import Deferred, ErrorCode, PermanentError
from docingest.pipeline.batching import plan_batches
from docingest.worker.embed_gate import EmbeddingGate

#: requests one worker keeps in flight at once (each carries up to 256 inputs)
MAX_IN_FLIGHT = 2
#: the longest a text waits for a request to fill before it is sent anyway
MAX_WAIT_S = 2.0


@dataclass(frozen=True)
class Text:
    """One distinct chunk text to embed."""

    sha: str
    text: str
    tokens: int


@dataclass(frozen=True)
class Answer:
    """What one text got: a vector (None: the provider refused this text), the request that
    carried it, and whether this job paid for it (False: another job's identical text did,
    so its tokens are counted there)."""

    vector: Vector | None
    batch_id: UUID
    paid: bool
    provider_span: tuple[float, float]  # the request that carried it, from sent to answered


class Owner:
    """A job's membership: registered while it is embedding."""

    def __init__(self) -> None:
        self.waiting = False  # blocked in `wait`
        self.more = True  # may still submit another window


@dataclass(eq=False)
class _Item:
    text: Text
    queued_at: float
    waiters: list[tuple[Owner, asyncio.Future[Answer]]] = field(default_factory=list)


class EmbeddingBatcher:
    def __init__(
        self,
        gate: EmbeddingGate,
        *,
        max_inputs: int,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_wait_s: float = MAX_WAIT_S,
        upstream_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.gate = gate
        self.max_inputs = max_inputs
        self.max_in_flight = max_in_flight
        self.max_wait_s = max_wait_s
        self.upstream_busy = upstream_busy
        self._owners: set[Owner] = set()
        self._queue: dict[str, _Item] = {}  # insertion order = age
        self._in_flight: dict[str, _Item] = {}
        # answered texts whose jobs have not all stored them yet: a job whose reuse lookup
        # ran before those vectors were committed gets the answer instead of paying again
        self._answered: dict[str, tuple[Answer, set[Owner]]] = {}
        # reuse lookups under way -> answered texts stored by every holder meanwhile: kept
        # answerable until the lookup's texts are submitted (its snapshot may predate them)
        self._lookups: dict[int, set[str]] = {}
        self._lookup_ids = itertools.count()
        self._sending: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False  # `stop_waiting` was called: nothing more is sent
        self._give_up: asyncio.TimerHandle | None = None  # ends the wait for requests out
        self.requests_sent = 0

    # --------------------------------------------------------------- jobs' side
    def join(self) -> Owner:
        owner = Owner()
        self._owners.add(owner)
        return owner

    def leave(self, owner: Owner) -> None:
        """The job is done embedding (or gave up): its queued texts are withdrawn and its
        answers still to come are dropped."""
        self._owners.discard(owner)
        self._release(owner, list(self._answered))
        self._withdraw(owner, self._queue, self._in_flight)
        self.poke()

    async def settle(
        self, owner: Owner, futures: Sequence[asyncio.Future[Answer]], timeout_s: float
    ) -> None:
        """After one of its requests failed: withdraw `owner`'s texts not sent yet and wait
        (at most `timeout_s`) for those in flight. They are paid for whatever the job does
        next, so it keeps their answers rather than paying for them again on its retry."""
        self._withdraw(owner, self._queue)
        owner.more = False
        owner.waiting = True  # it holds no other job's request back meanwhile
        self.poke()
        try:
            pending = [f for f in futures if not f.done()]
            if pending:
                await asyncio.wait(pending, timeout=timeout_s)
        finally:
            owner.waiting = False

    def _withdraw(self, owner: Owner, *tables: dict[str, _Item]) -> None:
        """Cancel `owner`'s futures in `tables`; a queued text nobody waits for is dropped."""
        for table in tables:
            for item in table.values():
                for o, future in item.waiters:
                    if o is owner:
                        future.cancel()
                item.waiters = [(o, f) for o, f in item.waiters if o is not owner]
        for sha in [sha for sha, item in self._queue.items() if not item.waiters]:
            del self._queue[sha]

    @contextlib.contextmanager
    def lookup(self) -> Iterator[None]:
        """Around a job's reuse lookup and the `submit` of what it did not find: a text
        answered to another job and committed after the lookup's snapshot is answered here
        again instead of being sent twice."""
        key = next(self._lookup_ids)
        self._lookups[key] = set()
        try:
            yield
        finally:
            for sha in self._lookups.pop(key):
                self._forget_if_unheld(sha)

    def submit(self, owner: Owner, texts: Sequence[Text]) -> list[asyncio.Future[Answer]]:
        """Queue `texts` for `owner`; one future per text, answered in any order."""
        loop = asyncio.get_running_loop()
        futures = []
        now = time.monotonic()
        for text in texts:
            future: asyncio.Future[Answer] = loop.create_future()
            futures.append(future)
            answered = self._answered.get(text.sha)
            if answered is not None:
                answered[1].add(owner)
                future.set_result(dataclasses.replace(answered[0], paid=False))
                continue
            if self._stopped:
                future.set_exception(_stopping())
                continue
            item = self._in_flight.get(text.sha) or self._queue.get(text.sha)
            if item is None:
                item = self._queue[text.sha] = _Item(text, now)
            item.waiters.append((owner, future))
        return futures

    def stored(self, owner: Owner, texts: Sequence[Text]) -> None:
        """The job committed these texts' vectors: other jobs will find them in the database."""
        self._release(owner, [t.sha for t in texts])

    def _release(self, owner: Owner, shas: Sequence[str]) -> None:
        for sha in shas:
            entry = self._answered.get(sha)
            if entry is not None:
                entry[1].discard(owner)
                for kept in self._lookups.values():
                    kept.add(sha)
                self._forget_if_unheld(sha)

    def _forget_if_unheld(self, sha: str) -> None:
        entry = self._answered.get(sha)
        if entry is None or entry[1]:
            return
        if not any(sha in kept for kept in self._lookups.values()):
            del self._answered[sha]

    async def wait(self, owner: Owner, futures: Sequence[asyncio.Future[Answer]]) -> list[Answer]:
        """Block until every future is answered (the job counts as waiting meanwhile)."""
        owner.waiting = True
        self.poke()
        try:
            return list(await asyncio.gather(*futures))
        finally:
            owner.waiting = False

    def poke(self) -> None:
        """Something changed (a job waits or left, a worker slot emptied, a request ended):
        send what can be sent now."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._send_ready()

    def stop_waiting(self, in_flight_s: float) -> None:
        """The worker's shutdown grace is nearly over: give every text not sent yet up with
        `Deferred` (each job then stores what it was answered and is given back, its retry
        budget untouched), and answer later submits the same way. Requests already out are
        awaited `in_flight_s` more: their answers are paid for whether or not a job stores
        them. What they have not brought back by then is given up too."""
        self._stopped = True
        for item in self._queue.values():
            self._fail(item, _stopping())
        self._queue.clear()
        if self._in_flight:
            self._give_up = asyncio.get_running_loop().call_later(
                in_flight_s, self._give_up_in_flight
            )

    def _give_up_in_flight(self) -> None:
        for item in self._in_flight.values():
            self._fail(item, _stopping())

    async def aclose(self) -> None:
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        for timer in (self._timer, self._give_up):
            if timer is not None:
                timer.cancel()

    # --------------------------------------------------------------- sending
    def _pending_load(self) -> tuple[int, int]:
        return len(self._queue), sum(i.text.tokens for i in self._queue.values())

    def _may_send_partial(self, now: float) -> bool:
        oldest = next(iter(self._queue.values())).queued_at
        if now - oldest >= self.max_wait_s:
            return True
        if self.upstream_busy() or not all(o.waiting for o in self._owners):
            return False
        # an answer still to come may let a job submit its next window
        return not (self._in_flight and any(o.more for o in self._owners))

    def _send_ready(self) -> None:
        while self._queue and len(self._sending) < self.max_in_flight:
            inputs, tokens = self._pending_load()
            full = inputs >= self.max_inputs or tokens >= self.gate.max_request_tokens
            now = time.monotonic()
            if not full and not self._may_send_partial(now):
                self._arm_timer(now)
                return
            batch = self._take()
            task = asyncio.create_task(self._send(batch), name="docingest-embed-request")
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _arm_timer(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        oldest = next(iter(self._queue.values())).queued_at
        delay = max(0.0, oldest + self.max_wait_s - now)
        self._timer = asyncio.get_running_loop().call_later(delay, self.poke)

    def _first_request(self, items: list[_Item]) -> list[_Item]:
        """The leading items one request can carry (inputs and token cap)."""
        first = plan_batches(
            [i.text.tokens for i in items],
            max_inputs=self.max_inputs,
            max_tokens=self.gate.max_request_tokens,
        )[0]
        return items[: len(first)]

    def _take(self) -> list[_Item]:
        batch = self._first_request(list(self._queue.values()))
        for item in batch:
            del self._queue[item.text.sha]
            self._in_flight[item.text.sha] = item
        return batch

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self.poke()

    async def _send(self, batch: list[_Item]) -> None:
        try:
            await self._send_items(batch)
        except BaseException as exc:
            for item in batch:
                self._fail(item, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            for item in batch:
                self._in_flight.pop(item.text.sha, None)

    async def _send_items(self, items: list[_Item]) -> None:
        """Send `items` in as few requests as the limits allow; split refused requests."""
        while items:
            chunk = self._first_request(items)
            sent = await self.gate.send(
                [i.text.text for i in chunk], [i.text.tokens for i in chunk]
            )
            done, items = chunk[: sent.count], items[sent.count :]
            self.requests_sent += 1
            batch_id = uuid4()
            if sent.vectors is not None:
                if len(sent.vectors) != len(done):
                    raise PermanentError(
                        ErrorCode.EMBEDDING_REJECTED, "provider returned a wrong vector count"
                    )
                for item, vector in zip(done, sent.vectors, strict=True):
                    self._answer(item, vector, batch_id, sent.provider_span)
            elif len(done) == 1:
                self._answer(done[0], None, batch_id, sent.provider_span)
            else:
                half = len(done) // 2
                await self._send_items(done[:half])
                await self._send_items(done[half:])

    def _answer(
        self, item: _Item, vector: Vector | None, batch_id: UUID, provider_span: tuple[float, float]
    ) -> None:
        self._in_flight.pop(item.text.sha, None)
        answer = Answer(vector, batch_id, True, provider_span)
        holders = {o for o, f in item.waiters if not f.done()}
        if vector is not None and holders:
            self._answered[item.text.sha] = (answer, holders)
        for n, (_, future) in enumerate(item.waiters):
            if not future.done():
                future.set_result(answer if n == 0 else dataclasses.replace(answer, paid=False))

    @staticmethod
    def _fail(item: _Item, exc: BaseException) -> None:
        for _, future in item.waiters:
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)


def _stopping() -> Deferred:
    return Deferred(0.0, "worker stopping")
