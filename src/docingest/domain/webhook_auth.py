"""Parse-callback authentication (DESIGN.md §5), pure functions only.

* Signed callbacks follow Standard Webhooks: `webhook-signature` holds space-separated
  `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{raw body}")>` entries; any one matching
  (compared in constant time) is enough, which is how a sender rotates keys. The key is per
  job and never stored: HMAC-SHA256(utf8(DOCINGEST_WEBHOOK_SECRET), utf8(job_id)).
* LlamaParse callbacks carry an unguessable per-job token instead. It is derived from the
  same secret under another label (so it can never equal a signing key) and only its
  sha256 is stored, so a database leak reveals no usable token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from uuid import UUID

TOLERANCE_S = 300
_MAX_ID_CHARS = 256
_TOKEN_LABEL = b"callback-token:"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureRejected(Exception):
    """Why a signed callback is refused; `reason` is a stable metric/event label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def job_signing_key(secret: str, job_id: UUID) -> bytes:
    """The 32 raw bytes that sign callbacks for one job."""
    return hmac.new(secret.encode("utf-8"), str(job_id).encode("utf-8"), hashlib.sha256).digest()


def callback_token(secret: str, job_id: UUID) -> str:
    """The token our LlamaParse webhook URL carries for one job (URL-safe, 256 bits)."""
    mac = hmac.new(secret.encode("utf-8"), _TOKEN_LABEL + str(job_id).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def token_job(secret: str, raw_job_id: str, presented: str | None) -> UUID | None:
    """The job whose callback token `presented` is (derived from `secret`, compared in
    constant time), or None. No database read: the API's admission uses it to tell a parser's
    genuine callback from an anonymous request before it spends anything on either."""
    if not presented or len(raw_job_id) > _MAX_ID_CHARS:
        return None
    try:
        job_id = UUID(raw_job_id)
    except ValueError:
        return None
    expected = callback_token(secret, job_id)
    return job_id if hmac.compare_digest(presented.encode(), expected.encode()) else None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(presented: str | None, stored_sha256: str | None) -> bool:
    """Constant-time check of a presented token against the stored hash; False when either
    is missing (fail closed)."""
    expected = stored_sha256 or "0" * 64
    digest = token_sha256(presented or "")
    return hmac.compare_digest(digest, expected) and bool(presented) and bool(stored_sha256)


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature entry."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check_headers(headers: Mapping[str, str], *, now: float) -> tuple[str, int, str]:
    """The headers' part of the check, possible before any body byte is read: present,
    well-formed, fresh. Returns (webhook-id, timestamp, signatures).

    Raises SignatureRejected with reason `missing_signature`, `malformed_headers` or
    `stale_timestamp`.
    """
    msg_id = headers.get("webhook-id")
    raw_ts = headers.get("webhook-timestamp")
    raw_sigs = headers.get("webhook-signature")
    if not msg_id or not raw_ts or not raw_sigs:
        raise SignatureRejected("missing_signature")
    if len(msg_id) > _MAX_ID_CHARS or "." in msg_id or not _TIMESTAMP.fullmatch(raw_ts):
        raise SignatureRejected("malformed_headers")
    timestamp = int(raw_ts)
    if abs(now - timestamp) > TOLERANCE_S:
        raise SignatureRejected("stale_timestamp")
    return msg_id, timestamp, raw_sigs


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
    """Check the Standard Webhooks headers over the raw body; return the `webhook-id`.

    Raises SignatureRejected with reason `missing_signature`, `malformed_headers`,
    `stale_timestamp` or `bad_signature`.
    """
    msg_id, timestamp, raw_sigs = check_headers(headers, now=now)
    expected = base64.b64decode(sign(key, msg_id, timestamp, body)[3:])
    matched = False
    for entry in raw_sigs.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # no early exit: every entry is compared
        matched = hmac.compare_digest(candidate, expected) or matched
    if not matched:
        raise SignatureRejected("bad_signature")
    return msg_id
