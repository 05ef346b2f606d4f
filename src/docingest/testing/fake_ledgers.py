"""What the fake services count about themselves, so that a test or `docingest validate` can
prove from the service's side that an injected fault really happened and what was billed,
and the jittered latency both fakes use.

Counts only: no request body, text or document id is kept (billed texts are kept as
sha256 digests, to count repeats)."""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Iterable


def jittered_s(base_ms: float, jitter_ms: float, rng: random.Random | None = None) -> float:
    """A latency in seconds drawn uniformly from [base, base + jitter] milliseconds."""
    extra = (rng or random).uniform(0.0, jitter_ms) if jitter_ms > 0 else 0.0
    return max(0.0, base_ms + extra) / 1000


class FaultCounter:
    """How many times each kind of injected fault was actually served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class BilledTexts:
    """Every input text answered (billed), by digest: how many distinct texts were paid
    for, and how many inputs paid again for a text already paid for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._repeats = 0

    def record(self, texts: Iterable[str]) -> None:
        digests = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        with self._lock:
            for digest in digests:
                if digest in self._seen:
                    self._repeats += 1
                else:
                    self._seen.add(digest)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"distinct_texts_billed": len(self._seen), "inputs_billed_again": self._repeats}

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self._repeats = 0
