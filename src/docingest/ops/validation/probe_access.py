"""Access probes: another user's token sees none of A's documents, jobs or search hits,
and bad bearer tokens (bad signature, expired, `alg: none`, another algorithm, no `exp`,
none, malformed) are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from docingest.ops.validation.probe_kit import (
    PROBE_ROUTE,
    Context,
    Upload,
    expect,
)
from docingest.security.bearer_tokens import ALGORITHM

# --------------------------------------------------------------------------- cross-user


@dataclass(frozen=True)
class Pair:
    a: Upload
    b: Upload  # B's own copy of the same bytes: same text, B's ids


def cross_pair(ctx: Context) -> Pair:
    a = ctx.upload(ctx.user(), ctx.sample)
    b = ctx.upload(ctx.user(), ctx.sample)
    jobs = ctx.terminal([a, b])
    expect([j["status"] for j in jobs] == ["complete"] * 2, "the pair did not complete")
    return Pair(a, b)


def as_b(ctx: Context, p: Pair, method: str, path: str, want: int) -> str:
    r = ctx.http.request(method, path, headers=p.b.owner.headers)
    expect(r.status_code == want, f"{method} answered {r.status_code}, expected {want}")
    owner_view = ctx.http.get(f"/v1/documents/{p.a.document_id}", headers=p.a.owner.headers)
    expect(owner_view.status_code == 200, f"owner's read then answered {owner_view.status_code}")
    body = owner_view.json()
    expect(body["status"] == "complete" and body["chunks"] > 0, "the owner's document changed")
    return f"{method} {r.status_code}; owner still reads it complete"


def probe_cross_search(ctx: Context, p: Pair) -> str:
    query = {"query": "coverage benefits plan", "k": 5}
    mine = ctx.http.post("/v1/search", json=query, headers=p.a.owner.headers).json()["results"]
    expect(
        bool(mine) and {r["document_id"] for r in mine} == {p.a.document_id},
        "A's own search found no A chunks",
    )
    text = str(mine[0]["text"])[:2000]
    theirs = ctx.http.post("/v1/search", json={"query": text, "k": 100}, headers=p.b.owner.headers)
    expect(theirs.status_code == 200, f"B's search answered {theirs.status_code}")
    results = theirs.json()["results"]
    docs = {r["document_id"] for r in results}
    expect(bool(results), "B's search over its own identical document found nothing")
    expect(
        docs == {p.b.document_id},
        f"B's results span {len(docs)} documents, A's among them: {p.a.document_id in docs}",
    )
    return f"B's {len(results)} results are all B's own; none of A's"


def probe_cross_list(ctx: Context, p: Pair) -> str:
    r = ctx.http.get("/v1/documents", params={"limit": 200}, headers=p.b.owner.headers)
    expect(r.status_code == 200, f"B's list answered {r.status_code}")
    ids = [d["document_id"] for d in r.json()["documents"]]
    expect(
        ids == [p.b.document_id],
        f"B's list has {len(ids)} documents, A's among them: {p.a.document_id in ids}",
    )
    return "B lists only its own document"


def cross_user_probes(pair: Callable[[], Pair]) -> list[tuple[str, Callable[[Context], str]]]:
    def route(method: str, template: str, want: int = 404) -> Callable[[Context], str]:
        def run(ctx: Context) -> str:
            p = pair()
            path = template.format(doc=p.a.document_id, job=p.a.job_id)
            return as_b(ctx, p, method, path, want)

        return run

    return [
        ("cross_user.read_document", route("GET", "/v1/documents/{doc}")),
        ("cross_user.read_job", route("GET", "/v1/jobs/{job}")),
        ("cross_user.read_job_by_document", route("GET", "/jobs/{doc}")),
        ("cross_user.delete_document", route("DELETE", "/v1/documents/{doc}")),
        ("cross_user.retry_job", route("POST", "/v1/jobs/{job}/retry")),
        ("cross_user.retry_by_document", route("POST", "/jobs/{doc}/retry")),
        ("cross_user.advance_non_admin", route("POST", "/jobs/{doc}/advance", 403)),
        ("cross_user.search", lambda ctx: probe_cross_search(ctx, pair())),
        ("cross_user.list", lambda ctx: probe_cross_list(ctx, pair())),
    ]


# --------------------------------------------------------------------------- tokens


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jws(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS by hand, for what PyJWT will not (or should not) produce."""
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    mac = hmac.new(key, signing_input.encode(), hashlib.sha512).digest() if key else b""
    return f"{signing_input}.{_b64(mac)}"


def bad_authorizations(secret: str) -> dict[str, str | None]:
    """Authorization header values that must all be refused (None: no header)."""
    now, sub = int(time.time()), str(uuid.uuid4())
    claims = {"sub": sub, "role": "authenticated", "iat": now, "exp": now + 600}
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    return {
        "token.bad_signature": "Bearer " + jwt.encode(claims, f"x{secret}", algorithm=ALGORITHM),
        "token.expired": "Bearer " + jwt.encode(expired, secret, algorithm=ALGORITHM),
        "token.alg_none": "Bearer " + _jws({"alg": "none", "typ": "JWT"}, claims, None),
        "token.other_algorithm": "Bearer "
        + _jws({"alg": "HS512", "typ": "JWT"}, claims, secret.encode()),
        "token.missing_exp": "Bearer " + jwt.encode(no_exp, secret, algorithm=ALGORITHM),
        "token.missing": None,
        "token.malformed_header": "Bearer not.a.jwt",
        "token.wrong_scheme": "Basic " + base64.b64encode(b"user:pass").decode(),
    }


def token_probes(ctx: Context) -> list[tuple[str, Callable[[Context], str]]]:
    def run(name: str) -> Callable[[Context], str]:
        def probe(c: Context) -> str:
            header = bad_authorizations(c.target.jwt_secret)[name]
            r = c.http.get(PROBE_ROUTE, headers={"Authorization": header} if header else {})
            expect(r.status_code == 401, f"answered {r.status_code}, expected 401")
            good = c.http.get(PROBE_ROUTE, headers=c.user().headers)
            expect(good.status_code == 200, f"a valid token then answered {good.status_code}")
            return "401; a valid token 200"

        return probe

    return [(name, run(name)) for name in bad_authorizations(ctx.target.jwt_secret)]
