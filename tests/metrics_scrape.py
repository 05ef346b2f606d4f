"""Read one sample out of a Prometheus text-format scrape, or out of this process's registry
(for metrics tests)."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of sample `name` whose labels include `labels`; None when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def local(name: str, **labels: str) -> float:
    """The value of sample `name` with exactly `labels` in this process's registry (0 when
    absent). Counters are process-wide: compare before and after, never absolute values."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
