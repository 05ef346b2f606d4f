"""The fake's configuration: start-up limits and the faults `POST /control` may change."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["hang", "500", "429", "quota"]


@dataclass
class FaultConfig:
    """Faults, set by command-line flags and merged at runtime by `POST /control`.

    Counters (`*_next`) count down one per `/v1/embeddings` request that passes auth.
    Precedence when several are armed: hang, then 500, then 429, then quota.
    """

    latency_ms: float = 0.0  # every /v1/embeddings request's time, its own work done within
    latency_jitter_ms: float = 0.0  # plus a uniform draw from [0, latency_jitter_ms]
    fail_429_next: int = 0  # 429 rate_limit_exceeded with retry-after / retry-after-ms
    fail_500_next: int = 0  # 500 server_error
    quota_exhausted: bool = False  # every request: 429 insufficient_quota (until cleared)
    poison_substring: str | None = None  # an input containing it -> 400 invalid_request_error
    hang_next: int = 0  # hold the response for hang_seconds, then answer normally
    hang_seconds: float = 30.0
    retry_after_ms: int = 20  # the hint sent with injected 429s


@dataclass
class FakeOpenAIConfig:
    api_key: str | None = None  # when set, `Authorization: Bearer <api_key>` is required
    rpm: int = 1_000_000
    tpm: int = 1_000_000_000
    faults: FaultConfig = field(default_factory=FaultConfig)


_INT_KEYS = frozenset({"fail_429_next", "fail_500_next", "hang_next", "retry_after_ms"})
_NUMBER_KEYS = frozenset({"latency_ms", "latency_jitter_ms", "hang_seconds"})
LIMIT_KEYS = frozenset({"rpm", "tpm"})
CONTROL_KEYS = frozenset(
    {f.name for f in dataclasses.fields(FaultConfig)} | LIMIT_KEYS,
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_control_value(key: str, value: object) -> None:
    if key in _INT_KEYS and not (isinstance(value, int) and _is_int(value) and value >= 0):
        raise ValueError(f"{key} must be an integer >= 0")
    if key in LIMIT_KEYS and not (isinstance(value, int) and _is_int(value) and value > 0):
        raise ValueError(f"{key} must be an integer > 0")
    if key in _NUMBER_KEYS and not (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        raise ValueError(f"{key} must be a number >= 0")
    if key == "quota_exhausted" and not isinstance(value, bool):
        raise ValueError("quota_exhausted must be a boolean")
    if key == "poison_substring" and not (
        value is None or (isinstance(value, str) and value != "")
    ):
        raise ValueError("poison_substring must be a non-empty string or null")


def validate_control(update: object) -> dict[str, object]:
    """Check a `/control` body; return it as a dict or raise ValueError (no value echoed)."""
    if not isinstance(update, dict):
        raise ValueError("control body must be a JSON object")
    unknown = sorted(str(k) for k in update if k not in CONTROL_KEYS)
    if unknown:
        raise ValueError(f"unknown control keys: {', '.join(unknown)}")
    for key, value in update.items():
        _check_control_value(key, value)
    return dict(update)
