"""Database-backed gauges for the API's `/metrics`, computed on each scrape.

A custom collector over one `QueueSnapshot`, registered in a throw-away registry per scrape:
the numbers are never stale and several apps in one process (tests) never share state.
Labels are job statuses only.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from docingest.store.queue_stats import QueueSnapshot


class QueueCollector(Collector):
    def __init__(self, snap: QueueSnapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snap
        jobs = GaugeMetricFamily("docingest_jobs", "Jobs by status", labels=["status"])
        for status, n in snap.by_status.items():
            jobs.add_metric([status.value], n)
        yield jobs
        yield GaugeMetricFamily(
            "docingest_queue_depth", "Jobs a worker could claim right now", value=snap.depth
        )
        yield GaugeMetricFamily(
            "docingest_queue_oldest_claimable_age_seconds",
            "Seconds the oldest claimable job has been waiting for a worker (0 when none)",
            value=snap.oldest_claimable_s,
        )
        yield GaugeMetricFamily(
            "docingest_workers_with_live_lease",
            "Distinct workers holding an unexpired lease on a job",
            value=snap.live_workers,
        )


def render(snap: QueueSnapshot) -> bytes:
    """The snapshot in Prometheus text format (appendable to the process registry's output)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(snap))
    return generate_latest(registry)
