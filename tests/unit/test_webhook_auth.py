"""Callback authentication: the Standard Webhooks signature (checked against the spec's known
test vector), per-job keys, callback tokens, and the seed callback body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import pytest

from docingest.domain import seed_callback, webhook_auth
from docingest.domain.seed_callback import CallbackRejected
from docingest.domain.webhook_auth import SignatureRejected

# CONTRACTS.md §3.1: the standard-webhooks library's own test vector
VECTOR_KEY = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SECRET = "s" * 40
JOB = uuid.UUID("3F2504E0-4F89-11D3-9A0C-0305E82C3301")


def headers(sig: str, *, msg_id: str = VECTOR_ID, ts: int = VECTOR_TS) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_sign_reproduces_the_standard_webhooks_test_vector() -> None:
    assert webhook_auth.sign(VECTOR_KEY, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_verify_accepts_the_vector_and_returns_the_id() -> None:
    got = webhook_auth.verify(VECTOR_KEY, headers(VECTOR_SIG), VECTOR_BODY, now=VECTOR_TS + 299)
    assert got == VECTOR_ID


@pytest.mark.parametrize(
    ("hdrs", "body", "now", "reason"),
    [
        ({}, VECTOR_BODY, VECTOR_TS, "missing_signature"),
        (headers(""), VECTOR_BODY, VECTOR_TS, "missing_signature"),
        (headers(VECTOR_SIG, msg_id="a.b"), VECTOR_BODY, VECTOR_TS, "malformed_headers"),
        ({**headers(VECTOR_SIG), "webhook-timestamp": "-5"}, VECTOR_BODY, 0, "malformed_headers"),
        ({**headers(VECTOR_SIG), "webhook-timestamp": "1²"}, VECTOR_BODY, 0, "malformed_headers"),
        (headers(VECTOR_SIG), VECTOR_BODY, VECTOR_TS + 301, "stale_timestamp"),
        (headers(VECTOR_SIG), VECTOR_BODY, VECTOR_TS - 301, "stale_timestamp"),
        (headers(VECTOR_SIG), b'{"test": 2432232315}', VECTOR_TS, "bad_signature"),
        (headers(VECTOR_SIG, msg_id="msg_other"), VECTOR_BODY, VECTOR_TS, "bad_signature"),
        (headers(VECTOR_SIG, ts=VECTOR_TS + 1), VECTOR_BODY, VECTOR_TS, "bad_signature"),
        (headers("v1a," + VECTOR_SIG[3:]), VECTOR_BODY, VECTOR_TS, "bad_signature"),
        (headers("v1,not base64!"), VECTOR_BODY, VECTOR_TS, "bad_signature"),
        (headers("nocomma"), VECTOR_BODY, VECTOR_TS, "bad_signature"),
    ],
)
def test_verify_refuses(hdrs: dict[str, str], body: bytes, now: int, reason: str) -> None:
    with pytest.raises(SignatureRejected) as info:
        webhook_auth.verify(VECTOR_KEY, hdrs, body, now=now)
    assert info.value.reason == reason


def test_any_of_several_signatures_may_match_key_rotation() -> None:
    old = webhook_auth.sign(b"k" * 32, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    for sig in (f"{old} {VECTOR_SIG}", f"{VECTOR_SIG} {old}", f"v1a,xyz {VECTOR_SIG}"):
        assert webhook_auth.verify(VECTOR_KEY, headers(sig), VECTOR_BODY, now=VECTOR_TS)
    with pytest.raises(SignatureRejected):
        webhook_auth.verify(VECTOR_KEY, headers(f"{old} {old}"), VECTOR_BODY, now=VECTOR_TS)


def test_per_job_key_is_hmac_of_the_canonical_lowercase_job_id() -> None:
    key = webhook_auth.job_signing_key(SECRET, JOB)
    expected = hmac.new(
        SECRET.encode(), b"3f2504e0-4f89-11d3-9a0c-0305e82c3301", hashlib.sha256
    ).digest()
    assert key == expected and len(key) == 32
    assert webhook_auth.job_signing_key(SECRET, uuid.uuid4()) != key
    assert webhook_auth.job_signing_key(SECRET + "x", JOB) != key


def test_callback_token_is_per_job_distinct_from_the_key_and_checked_by_hash() -> None:
    token = webhook_auth.callback_token(SECRET, JOB)
    assert len(token) == 43 and token.replace("-", "").replace("_", "").isalnum()
    assert token != webhook_auth.callback_token(SECRET, uuid.uuid4())
    assert base64.urlsafe_b64decode(token + "=") != webhook_auth.job_signing_key(SECRET, JOB)
    stored = webhook_auth.token_sha256(token)
    assert webhook_auth.token_matches(token, stored)
    assert not webhook_auth.token_matches(token[:-1] + "A", stored)
    assert not webhook_auth.token_matches(None, stored)
    assert not webhook_auth.token_matches("", stored)
    assert not webhook_auth.token_matches(token, None)


def test_seed_body_roundtrip_and_refusals() -> None:
    doc = uuid.uuid4()
    raw = seed_callback.build(JOB, doc, "# Title\n\nbody é\n", "fake", "1")
    job_id = seed_callback.claimed_job_id(raw)
    assert job_id == JOB
    body = seed_callback.load(raw, job_id)
    cb = seed_callback.parse(body, job_id)
    assert (cb.document_id, cb.markdown, cb.parser_name) == (doc, "# Title\n\nbody é\n", "fake")

    def refused(mutate: object, status: int, reason: str) -> None:
        changed = json.loads(raw)
        mutate(changed)  # type: ignore[operator]
        with pytest.raises(CallbackRejected) as info:
            seed_callback.parse(changed, JOB)
        assert (info.value.status, info.value.reason) == (status, reason)

    refused(
        lambda b: b["artifacts"][0].update(content="# Title\n\nbody e\n"), 422, "artifact_mismatch"
    )
    refused(lambda b: b["artifacts"][0].update(bytes=1), 422, "artifact_mismatch")
    refused(lambda b: b["artifacts"][0].update(sha256="0" * 64), 422, "artifact_mismatch")
    refused(lambda b: b.update(status="failed"), 422, "malformed_body")
    refused(lambda b: b.update(document_id="nope"), 422, "malformed_body")
    refused(lambda b: b.update(artifacts=[]), 422, "malformed_body")
    refused(lambda b: b["artifacts"][0].update(type="text"), 422, "malformed_body")
    refused(lambda b: b["meta"].update(parser_name="a b"), 422, "malformed_body")
    other = uuid.uuid4()
    two_ids = f'{{"job_id": "{JOB}", "meta": {{"job_id": "{other}"}}}}'.encode()
    for bad in (b"not json", b"[]", b'{"job_id": "x"}', b"{}", two_ids):
        with pytest.raises(CallbackRejected) as info:
            seed_callback.claimed_job_id(bad)
        assert (info.value.status, info.value.reason) == (401, "unverifiable_body")
    # signed for JOB, parsed only as a callback of JOB: anything else is a malformed body
    escaped = json.dumps({"x": f'"job_id": "{other}"', "job_id": str(JOB)}).encode()
    assert seed_callback.claimed_job_id(escaped) == JOB  # a quoted pair inside a string is no key
    deep = b'{"job_id": "' + str(JOB).encode() + b'", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for bad in (b"not json", b"[]", f'{{"job_id": "{other}"}}'.encode(), deep):
        with pytest.raises(CallbackRejected) as info:
            seed_callback.load(bad, JOB)
        assert (info.value.status, info.value.reason) == (422, "malformed_body")


def test_token_job_names_the_job_only_for_its_own_token() -> None:
    secret, job, other = "s" * 40, uuid.uuid4(), uuid.uuid4()
    token = webhook_auth.callback_token(secret, job)
    assert webhook_auth.token_job(secret, str(job), token) == job
    assert webhook_auth.token_job(secret, str(other), token) is None  # another job's token
    assert webhook_auth.token_job("t" * 40, str(job), token) is None  # another secret
    assert webhook_auth.token_job(secret, str(job), None) is None
    assert webhook_auth.token_job(secret, "not-a-uuid", token) is None
    assert webhook_auth.token_job(secret, "9" * 10_000, token) is None
