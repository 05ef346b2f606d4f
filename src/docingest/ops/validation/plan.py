"""How much work each validation phase does: `--quick` (a CI-sized run) or the full run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    corpus_max_bytes: int | None  # real/ files up to this size (None: all of them)
    hostile: bool  # also push corpus/hostile through (expected failures count separately)
    generated_docs: int  # extra generated documents in the reliability run
    predictability_docs: int  # same-size documents timed one at a time
    scaling_workers: tuple[int, ...]
    scaling_docs_per_worker: int
    scaling_embed_latency_ms: float  # the fake embedder's latency: external I/O dominates
    outage_s: float  # parser and embedder outage length
    reliability_workers: int = 4
    reliability_timeout_s: float = 900.0


QUICK = Plan(
    name="quick",
    corpus_max_bytes=600_000,
    hostile=True,
    generated_docs=8,
    predictability_docs=8,
    scaling_workers=(1, 2, 4, 8),
    scaling_docs_per_worker=3,
    scaling_embed_latency_ms=3000.0,
    outage_s=3.0,
)

FULL = Plan(
    name="full",
    corpus_max_bytes=None,
    hostile=True,
    generated_docs=60,
    predictability_docs=30,
    scaling_workers=(1, 2, 4, 8),
    scaling_docs_per_worker=10,
    scaling_embed_latency_ms=6000.0,
    outage_s=30.0,
    reliability_timeout_s=2400.0,
)
