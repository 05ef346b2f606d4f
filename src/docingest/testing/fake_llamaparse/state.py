"""What the fake remembers: jobs, held callbacks, running tasks and statistics."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from docingest.testing.fake_ledgers import FaultCounter
from docingest.testing.fake_llamaparse.faults import Faults
from docingest.testing.fake_parse_pool import ParsePool


@dataclass
class FakeJob:
    id: str
    webhook_url: str | None
    job_id: str | None  # docingest's ids, from the form (relay mode)
    document_id: str | None
    status: str = "PENDING"
    error_code: str | None = None
    error_message: str | None = None
    markdown: str = ""
    lost: bool = False
    received: float = field(default_factory=time.monotonic)
    seconds: float | None = None  # upload received -> job finished, as this service saw it


@dataclass
class Delivery:
    url: str
    body: bytes
    webhook_id: str | None  # relay mode: signed with this id
    key: bytes | None


@dataclass
class FakeState:
    api_key: str | None
    webhook_secret: str | None
    faults: Faults
    # Like the real service's queue: at most this many documents parse at once, the rest
    # stay PENDING in arrival order (and the fake's CPU use stays bounded on small machines).
    parser: ParsePool = field(default_factory=lambda: ParsePool(2))
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    held: list[Delivery] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    injected: FaultCounter = field(default_factory=FaultCounter)  # faults actually served
    stats: dict[str, Any] = field(
        default_factory=lambda: {
            "uploads": 0,
            "upload_status_counts": {},
            "status_polls": 0,
            "result_fetches": 0,
            "callbacks_attempted": 0,
            "callbacks_delivered": 0,
            "callbacks_dropped": 0,
            "callback_status_counts": {},
            "outage_503_counts": {},  # by route: upload, status, result
        }
    )

    def count(self, key: str, status: int | str) -> None:
        counts = self.stats[key]
        counts[str(status)] = counts.get(str(status), 0) + 1

    def take(self, name: str) -> bool:
        """Consume one unit of a `*_next` fault (counted in `faults_injected`)."""
        left = getattr(self.faults, name)
        if left > 0:
            setattr(self.faults, name, left - 1)
            self.injected.count(name.removesuffix("_next"))
            return True
        return False

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def snapshot(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job.status] = by_status.get(job.status, 0) + 1
        return {
            **json.loads(json.dumps(self.stats)),
            "jobs_by_status": by_status,
            "faults_injected": self.injected.snapshot(),
            "job_seconds": {
                job.id: round(job.seconds, 3)
                for job in self.jobs.values()
                if job.seconds is not None
            },
        }
