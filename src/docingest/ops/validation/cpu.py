"""CPU time used by the processes of a validation stack, and by everything else on the
machine meanwhile: what a scaling figure needs to say where its ceiling is.

A stack's CPU time is the user + system time of every process it started and of all their
descendants (PostgreSQL backends, parser children), the finished ones included (their time
is added to the parent that reaped them)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


def _tree_seconds(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass(frozen=True)
class CpuSample:
    stack_s: float  # CPU seconds of the stack's process trees
    machine_busy_s: float  # CPU seconds the whole machine spent busy (all cores)


def sample(pids: Iterable[int]) -> CpuSample:
    busy = psutil.cpu_times()
    machine = busy.user + busy.system + getattr(busy, "nice", 0.0) + getattr(busy, "irq", 0.0)
    machine += getattr(busy, "softirq", 0.0) + getattr(busy, "steal", 0.0)
    return CpuSample(sum(_tree_seconds(pid) for pid in pids), machine)


@dataclass(frozen=True)
class CpuUse:
    stack_s: float
    others_cores: float  # how many cores everything else on the machine kept busy, on average
    cores: int

    @staticmethod
    def between(before: CpuSample, after: CpuSample, wall_s: float) -> CpuUse:
        stack = after.stack_s - before.stack_s
        others = after.machine_busy_s - before.machine_busy_s - stack
        return CpuUse(stack, max(0.0, others) / wall_s if wall_s > 0 else 0.0, os.cpu_count() or 1)
