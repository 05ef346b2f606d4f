"""Everything the fake remembers between requests: faults, rate budgets and statistics."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable

from docingest.testing.fake_ledgers import BilledTexts, FaultCounter
from docingest.testing.fake_openai.config import (
    LIMIT_KEYS,
    FakeOpenAIConfig,
    FaultKind,
    validate_control,
)
from docingest.testing.fake_openai.limits import (
    BudgetDenial,
    SlidingWindow,
    TokenBucket,
    go_duration,
)

STATS_WINDOW_S = 60.0  # the "per minute" of RPM/TPM, as a sliding window


class FakeOpenAIState:
    """Everything the fake remembers: fault config, rate-limit buckets and statistics."""

    def __init__(
        self, config: FakeOpenAIConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.faults = dataclasses.replace(config.faults)
        self.rpm = config.rpm
        self.tpm = config.tpm
        now = clock()
        self._requests = TokenBucket(self.rpm, now)
        self._tokens = TokenBucket(self.tpm, now)
        self._stats_requests = 0
        self._stats_inputs = 0
        self._stats_tokens = 0
        self._status_counts: dict[str, int] = {}
        self._window = SlidingWindow(STATS_WINDOW_S)
        self._denials = 0
        self.injected = FaultCounter()
        self.billed = BilledTexts()

    # control ------------------------------------------------------------------
    def control_snapshot(self) -> dict[str, object]:
        with self._lock:
            return {**dataclasses.asdict(self.faults), "rpm": self.rpm, "tpm": self.tpm}

    def apply_control(self, update: object) -> dict[str, object]:
        checked = validate_control(update)
        limits = {k: v for k, v in checked.items() if k in LIMIT_KEYS}
        faults = {k: v for k, v in checked.items() if k not in LIMIT_KEYS}
        with self._lock:
            merged = dataclasses.replace(self.faults)
            for key, value in faults.items():
                setattr(merged, key, value)  # types checked by validate_control
            self.faults = merged
            if limits:
                rpm, tpm = limits.get("rpm", self.rpm), limits.get("tpm", self.tpm)
                assert isinstance(rpm, int) and isinstance(tpm, int)  # checked above
                self._set_limits(rpm, tpm)
        return self.control_snapshot()

    def reset_control(self) -> dict[str, object]:
        """Back to the start-up configuration (the command-line flags)."""
        with self._lock:
            self.faults = dataclasses.replace(self.config.faults)
            self._set_limits(self.config.rpm, self.config.tpm)
        return self.control_snapshot()

    def _set_limits(self, rpm: int, tpm: int) -> None:
        self.rpm, self.tpm = rpm, tpm
        now = self._clock()
        self._requests = TokenBucket(rpm, now)
        self._tokens = TokenBucket(tpm, now)

    def take_fault(self) -> FaultKind | None:
        """Consume one armed fault for this request, if any."""
        with self._lock:
            f = self.faults
            kind: FaultKind | None = None
            if f.hang_next > 0:
                f.hang_next -= 1
                kind = "hang"
            elif f.fail_500_next > 0:
                f.fail_500_next -= 1
                kind = "500"
            elif f.fail_429_next > 0:
                f.fail_429_next -= 1
                kind = "429"
            elif f.quota_exhausted:
                kind = "quota"
        if kind is not None:
            self.injected.count(kind)
        return kind

    # rate limits --------------------------------------------------------------
    def admit(self, tokens: int) -> BudgetDenial | None:
        """Take one request and `tokens` from the budgets, or say why not."""
        with self._lock:
            now = self._clock()
            self._requests.refill(now)
            self._tokens.refill(now)
            if self._requests.level < 1:
                self._denials += 1
                return BudgetDenial(
                    "requests",
                    self.rpm,
                    self.rpm - math.floor(self._requests.level),
                    1,
                    self._requests.wait_for(1),
                )
            if self._tokens.level < tokens:
                self._denials += 1
                wait = self._tokens.wait_for(tokens) if tokens <= self.tpm else 60.0
                return BudgetDenial(
                    "tokens", self.tpm, self.tpm - math.floor(self._tokens.level), tokens, wait
                )
            self._requests.level -= 1
            self._tokens.level -= tokens
            return None

    def rate_limit_headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            self._requests.refill(now)
            self._tokens.refill(now)
            return {
                "x-ratelimit-limit-requests": str(self.rpm),
                "x-ratelimit-limit-tokens": str(self.tpm),
                "x-ratelimit-remaining-requests": str(max(0, math.floor(self._requests.level))),
                "x-ratelimit-remaining-tokens": str(max(0, math.floor(self._tokens.level))),
                "x-ratelimit-reset-requests": go_duration(self._requests.reset_after()),
                "x-ratelimit-reset-tokens": go_duration(self._tokens.reset_after()),
            }

    # stats --------------------------------------------------------------------
    def record(self, status: int, inputs: int, tokens: int) -> None:
        with self._lock:
            self._stats_requests += 1
            self._stats_inputs += inputs
            self._stats_tokens += tokens
            key = str(status)
            self._status_counts[key] = self._status_counts.get(key, 0) + 1
            self._window.add(self._clock(), tokens)

    def stats(self) -> dict[str, object]:
        """`inputs` and `tokens` count only answered (200) requests: what would be billed.
        `max_*_per_window`: the most requests (any status) and billed tokens seen in any
        sliding 60 s window, to check a client's RPM/TPM discipline. `rate_limit_denials`:
        429s from this server's own rate limiter (not injected ones). `faults_injected`: the
        injected faults actually served, by kind. `distinct_texts_billed`,
        `inputs_billed_again`: billed inputs by text, as the provider would see a double
        payment."""
        with self._lock:
            return {
                "faults_injected": self.injected.snapshot(),
                **self.billed.snapshot(),
                "requests": self._stats_requests,
                "inputs": self._stats_inputs,
                "tokens": self._stats_tokens,
                "status_counts": dict(self._status_counts),
                "window_s": STATS_WINDOW_S,
                "max_requests_per_window": self._window.max_requests,
                "max_tokens_per_window": self._window.max_tokens,
                "rate_limit_denials": self._denials,
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._stats_requests = self._stats_inputs = self._stats_tokens = 0
            self._status_counts = {}
            self._window = SlidingWindow(STATS_WINDOW_S)
            self._denials = 0
        self.injected.reset()
        self.billed.reset()
