"""Job status sets of domain/states.py as SQL list literals, for queries that filter on them
(the partial index `upload_jobs_claimable` is defined on the same terminal list)."""

from __future__ import annotations

from docingest.domain.states import FAILED, TERMINAL, JobStatus


def status_list(statuses: frozenset[JobStatus]) -> str:
    """`('a', 'b', ...)` in a fixed order (the enum's own values, never user input)."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")"


TERMINAL_SQL = status_list(TERMINAL)
FAILED_SQL = status_list(FAILED)
