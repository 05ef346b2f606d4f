"""The "faults injected" section of a validation report, from evidence only: the fake
services' own counters of faults they served, the exit status of each worker killed, the
postmaster pid before and after each restart. A fault that was armed but not served fails
the run: a recovery measured without its fault proves nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Fault:
    phase: str
    fault: str
    armed: int  # how many the phase asked for
    served: int  # how many the evidence shows happened
    evidence: str  # where `served` comes from

    @property
    def happened(self) -> bool:
        return self.armed > 0 and self.served >= self.armed

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "happened": self.happened}


def served_since(before: Mapping[str, int], after: Mapping[str, int], kind: str) -> int:
    """How many faults of `kind` a fake served between two `faults_injected` snapshots."""
    return int(after.get(kind, 0)) - int(before.get(kind, 0))


def counted(
    phase: str,
    service: str,
    armed: Mapping[str, int],
    before: Mapping[str, int],
    after: Mapping[str, int],
) -> list[Fault]:
    """One entry per armed `*_next`-style fault of a fake, served counts from its stats."""
    return [
        Fault(
            phase,
            f"{service} {kind}",
            n,
            served_since(before, after, kind),
            f"{service} /stats faults_injected",
        )
        for kind, n in armed.items()
        if n > 0
    ]


def table(faults: list[Fault]) -> list[dict[str, Any]]:
    return [f.row() for f in faults]
