"""The fake's faults: set by flags, changed at runtime by `POST /control`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MODES = ("callback", "relay", "none")
FAIL_STATUSES = ("ERROR", "PARTIAL_SUCCESS", "CANCELED", "CANCELLED")


@dataclass
class Faults:
    """Set by flags, merged at runtime by `POST /control`. `*_next` count down per event."""

    mode: str = "callback"
    upload_429_next: int = 0  # 429 with Retry-After on the next uploads
    upload_500_next: int = 0  # 500 on the next uploads
    fail_jobs_next: int = 0  # the next uploaded jobs end in `fail_status`
    fail_status: str = "ERROR"
    fail_error_code: str = "NO_DATA_FOUND_IN_FILE"
    lose_jobs_next: int = 0  # the next uploaded jobs answer 404 once finished
    upload_delay_ms: float = 0.0  # an accepted upload is answered after this long
    parse_delay_ms: float = 0.0  # a job stays PENDING at least this long
    parse_delay_jitter_ms: float = 0.0  # plus a uniform draw from [0, parse_delay_jitter_ms]
    drop_callbacks_next: int = 0  # never delivered
    duplicate_callbacks_next: int = 0  # delivered twice (same webhook-id in relay mode)
    callback_delay_ms: float = 0.0  # before each delivery
    hold_callbacks: int = 0  # hold this many, then deliver them newest first (reorder)
    retry_after_ms: int = 50
    outage_until: float = 0.0  # unix time: until then upload, status and result answer 503


_INT_KEYS = {
    "upload_429_next",
    "upload_500_next",
    "fail_jobs_next",
    "lose_jobs_next",
    "drop_callbacks_next",
    "duplicate_callbacks_next",
    "hold_callbacks",
    "retry_after_ms",
}
_FLOAT_KEYS = {
    "upload_delay_ms",
    "parse_delay_ms",
    "parse_delay_jitter_ms",
    "callback_delay_ms",
    "outage_until",
}


def validate_control(update: object) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise ValueError("control body must be a JSON object")
    names = {f.name for f in dataclasses.fields(Faults)}
    unknown = sorted(str(k) for k in update if k not in names)
    if unknown:
        raise ValueError(f"unknown control keys: {', '.join(unknown)}")
    for key, value in update.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _INT_KEYS and not (isinstance(value, int) and number and value >= 0):
            raise ValueError(f"{key} must be an integer >= 0")
        if key in _FLOAT_KEYS and not (number and value >= 0):
            raise ValueError(f"{key} must be a number >= 0")
        if key == "mode" and value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if key == "fail_status" and value not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {', '.join(FAIL_STATUSES)}")
        if key == "fail_error_code" and not (isinstance(value, str) and value):
            raise ValueError("fail_error_code must be a non-empty string")
    return dict(update)
