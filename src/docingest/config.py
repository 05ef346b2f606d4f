"""Settings read once from the environment (DESIGN.md §7), validated strictly.

A bad value stops start-up with one line naming the variable (`ConfigError`). Secrets are
never echoed back in those messages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from docingest.pipeline.stored_vector import MAX_DIMENSIONS


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable, never its value."""


_PARSERS = ("local", "llamaparse")
#: the first is the default: offline and semantic (clients/wordllama_embedder.py)
_EMBEDDERS = ("wordllama", "hash", "openai")
#: Matryoshka prefixes of the shipped 256-dimension WordLlama weights the model was trained for
WORDLLAMA_DIMENSIONS = (64, 128, 256)
_LOG_FORMATS = ("json", "console")
_VECTOR_SEARCH = ("exact", "index")
MIN_EMBED_TPM = 1000


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name} must be true or false")
    return raw in ("true", "1", "yes")


def _price(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (USD per million tokens)") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = env.get(name) or None
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.query or parsed.path):
        raise ConfigError(f"{name} must be a URL starting with {' or '.join(schemes)}://")
    return value


def _batch_size(env: Mapping[str, str]) -> int:
    value = _int(env, "DOCINGEST_EMBED_BATCH_SIZE", 256)
    if value > 256:
        raise ConfigError("DOCINGEST_EMBED_BATCH_SIZE must be <= 256")
    return value


def _embed_dimensions(env: Mapping[str, str], embedder: str) -> int:
    if embedder == "wordllama":
        dims = _int(env, "DOCINGEST_EMBED_DIMENSIONS", WORDLLAMA_DIMENSIONS[-1])
        if dims not in WORDLLAMA_DIMENSIONS:
            allowed = ", ".join(map(str, WORDLLAMA_DIMENSIONS))
            raise ConfigError(f"DOCINGEST_EMBED_DIMENSIONS must be one of {allowed} for wordllama")
        return dims
    dims = _int(env, "DOCINGEST_EMBED_DIMENSIONS", 1536)
    if dims > MAX_DIMENSIONS:
        raise ConfigError(
            f"DOCINGEST_EMBED_DIMENSIONS must be <= {MAX_DIMENSIONS} (pgvector halfvec index limit)"
        )
    return dims


@dataclass(frozen=True)
class S3Settings:
    """How to reach an s3:// blob store (`store/blobs_s3.py`): the endpoint of an
    S3-compatible service (Supabase Storage, MinIO, R2; unset for AWS) and the standard AWS
    variables. Unset credentials come from boto3's default chain (profile, instance role)."""

    endpoint_url: str | None
    region: str | None
    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    session_token: str | None = field(repr=False)


def _s3_settings(env: Mapping[str, str]) -> S3Settings:
    key_id = env.get("AWS_ACCESS_KEY_ID") or None
    secret = env.get("AWS_SECRET_ACCESS_KEY") or None
    if (key_id is None) != (secret is None):
        missing = "AWS_SECRET_ACCESS_KEY" if secret is None else "AWS_ACCESS_KEY_ID"
        raise ConfigError(f"{missing} must be set together with the other AWS key variable")
    return S3Settings(
        endpoint_url=_url(env, "DOCINGEST_S3_ENDPOINT_URL", ("http", "https")),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
    )


@dataclass(frozen=True)
class EdgeLimits:
    """Deadlines and caps at the HTTP edge (api/edge.py, api/admission.py): a slow, idle or
    greedy client costs its own connection and lane, never the service."""

    header_timeout_s: int  # request line + headers must arrive within this
    body_timeout_s: int  # longest gap between two pieces of a request body
    body_min_rate: int  # bytes/s a body must average once `body_timeout_s` has passed
    connections_per_address: int  # open connections one address may hold
    anon_rate: int  # requests/s one address may make without a valid token ...
    anon_burst: int  # ... with bursts up to this many
    anon_inflight_per_address: int  # unauthenticated requests served at once per address
    anon_inflight: int  # unauthenticated requests served at once, all addresses together
    user_inflight: int  # requests served at once for one user
    statement_timeout_s: int  # every API database statement
    trusted_proxies: str | None  # addresses whose X-Forwarded-For is believed


def _edge_limits(env: Mapping[str, str]) -> EdgeLimits:
    limits = EdgeLimits(
        header_timeout_s=_int(env, "DOCINGEST_API_HEADER_TIMEOUT_SECONDS", 10),
        body_timeout_s=_int(env, "DOCINGEST_API_BODY_TIMEOUT_SECONDS", 15),
        body_min_rate=_int(env, "DOCINGEST_API_BODY_MIN_BYTES_PER_SECOND", 1024),
        connections_per_address=_int(env, "DOCINGEST_API_MAX_CONNECTIONS_PER_ADDRESS", 256),
        anon_rate=_int(env, "DOCINGEST_API_ANON_RATE_PER_SECOND", 20),
        anon_burst=_int(env, "DOCINGEST_API_ANON_BURST", 60),
        anon_inflight_per_address=_int(env, "DOCINGEST_API_ANON_MAX_INFLIGHT_PER_ADDRESS", 4),
        anon_inflight=_int(env, "DOCINGEST_API_ANON_MAX_INFLIGHT", 16),
        user_inflight=_int(env, "DOCINGEST_API_USER_MAX_INFLIGHT", 8),
        statement_timeout_s=_int(env, "DOCINGEST_API_STATEMENT_TIMEOUT_SECONDS", 15),
        trusted_proxies=env.get("DOCINGEST_API_TRUSTED_PROXIES") or None,
    )
    if limits.anon_burst < limits.anon_rate:
        raise ConfigError("DOCINGEST_API_ANON_BURST must be >= DOCINGEST_API_ANON_RATE_PER_SECOND")
    return limits


@dataclass(frozen=True)
class WorkLimits:
    """What one document may cost the worker (named error codes when exceeded)."""

    # the densest corpus page holds 11,594 characters, the largest document 1.68 million
    max_page_chars: int = 50_000  # extracted text of one page (`text_limit`)
    max_document_chars: int = 5_000_000  # markdown of one document (`text_limit`)
    max_chunks: int = 10_000  # chunks of one document (`too_many_chunks`)
    max_user_retries: int = 3  # POST .../retry accepted per job, over its whole life
    statement_timeout_s: int = 120  # every worker database statement


def _work_limits(env: Mapping[str, str]) -> WorkLimits:
    d = WorkLimits()
    return WorkLimits(
        max_page_chars=_int(env, "DOCINGEST_MAX_PAGE_CHARS", d.max_page_chars),
        max_document_chars=_int(env, "DOCINGEST_MAX_DOCUMENT_CHARS", d.max_document_chars),
        max_chunks=_int(env, "DOCINGEST_MAX_CHUNKS", d.max_chunks),
        max_user_retries=_int(env, "DOCINGEST_MAX_USER_RETRIES", d.max_user_retries, minimum=0),
        statement_timeout_s=_int(
            env, "DOCINGEST_WORKER_STATEMENT_TIMEOUT_SECONDS", d.statement_timeout_s
        ),
    )


#: HIPAA (45 CFR 164.316(b)(2)(i)) keeps documentation six years: 6 x 365 days + 2 leap days
AUDIT_RETENTION_FLOOR_DAYS = 2192
_DB_ENCRYPTION_POLICIES = ("warn", "require")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    storage_url: str | None
    s3: S3Settings | None  # set when storage_url is s3://
    master_key: str | None = field(repr=False)
    master_key_previous: str | None = field(repr=False)  # retired keys, read-only
    jwt_secret: str | None = field(repr=False)
    webhook_secret: str | None = field(repr=False)
    jwt_issuer: str | None  # when set, tokens must carry this `iss` (e.g. Supabase's auth URL)
    jwt_audience: str | None  # when set, tokens must carry this `aud` (Supabase: authenticated)
    public_url: str
    parser: str
    llamaparse_url: str
    llamaparse_api_key: str | None = field(repr=False)
    embedder: str
    openai_base_url: str
    openai_api_key: str | None = field(repr=False)
    embed_model: str
    embed_dimensions: int
    embed_rpm: int | None
    embed_tpm: int | None
    embed_price_per_mtok: float | None
    circuit_failures: int
    circuit_cooldown_s: int
    embed_quota_cooldown_s: int
    embed_batch_size: int
    vector_search: str  # exact (default) | index: use a bulk-built approximate index if any
    max_upload_bytes: int
    api_max_inflight: int
    max_pages: int
    parse_timeout_s: int
    parse_memory_mb: int
    parse_callback_timeout_s: int
    lease_seconds: int
    max_retries: int
    log_format: str
    edge: EdgeLimits
    work: WorkLimits
    jwt_max_ttl_s: int  # tokens living longer than this (exp - iat, or exp - now) are refused
    audit_retention_days: int  # audit rows about people and documents
    audit_noise_retention_days: int  # aggregated anonymous refusals and unbound rejections
    db_encryption_policy: str  # warn | require (store/at_rest.py)
    db_encrypted_at_rest: bool  # the operator's declaration for a database we cannot inspect

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("DOCINGEST_HOME") or "./.docingest").expanduser().resolve()
        database_url = _url(env, "DOCINGEST_DATABASE_URL", ("postgresql", "postgres"))
        storage_url = env.get("DOCINGEST_STORAGE_URL") or None
        if storage_url is not None and not storage_url.startswith(("file://", "s3://")):
            raise ConfigError("DOCINGEST_STORAGE_URL must start with file:// or s3://")
        s3 = _s3_settings(env) if storage_url and storage_url.startswith("s3://") else None
        jwt_secret = env.get("DOCINGEST_JWT_SECRET") or None
        if jwt_secret is not None and len(jwt_secret) < 32:
            raise ConfigError("DOCINGEST_JWT_SECRET must be at least 32 characters")
        webhook_secret = env.get("DOCINGEST_WEBHOOK_SECRET") or None
        if webhook_secret and len(webhook_secret) < 32:
            raise ConfigError("DOCINGEST_WEBHOOK_SECRET must be at least 32 characters")
        parser = _choice(env, "DOCINGEST_PARSER", "local", _PARSERS)
        embedder = _choice(env, "DOCINGEST_EMBEDDER", _EMBEDDERS[0], _EMBEDDERS)
        openai_key = env.get("DOCINGEST_OPENAI_API_KEY") or env.get("OPENAI_API_KEY") or None
        if embedder == "openai" and not openai_key:
            raise ConfigError(
                "DOCINGEST_OPENAI_API_KEY (or OPENAI_API_KEY) is required for the openai embedder"
            )
        llamaparse_key = env.get("DOCINGEST_LLAMAPARSE_API_KEY") or None
        if parser == "llamaparse" and not llamaparse_key:
            raise ConfigError("DOCINGEST_LLAMAPARSE_API_KEY is required for the llamaparse parser")
        dims = _embed_dimensions(env, embedder)
        rpm = _int(env, "DOCINGEST_EMBED_RPM", 0, minimum=0) or None
        tpm = _int(env, "DOCINGEST_EMBED_TPM", 0, minimum=0) or None
        if tpm is not None and tpm < MIN_EMBED_TPM:  # one request must fit a whole chunk
            raise ConfigError(f"DOCINGEST_EMBED_TPM must be 0 (unlimited) or >= {MIN_EMBED_TPM}")
        return cls(
            home=home,
            database_url=database_url,
            storage_url=storage_url,
            s3=s3,
            master_key=env.get("DOCINGEST_MASTER_KEY") or None,
            master_key_previous=env.get("DOCINGEST_MASTER_KEY_PREVIOUS") or None,
            jwt_secret=jwt_secret,
            webhook_secret=webhook_secret,
            jwt_issuer=env.get("DOCINGEST_JWT_ISSUER") or None,
            jwt_audience=env.get("DOCINGEST_JWT_AUDIENCE") or None,
            public_url=_url(env, "DOCINGEST_PUBLIC_URL", ("http", "https"))
            or "http://127.0.0.1:8000",
            parser=parser,
            llamaparse_url=_url(env, "DOCINGEST_LLAMAPARSE_URL", ("http", "https"))
            or "https://api.cloud.llamaindex.ai",
            llamaparse_api_key=llamaparse_key,
            embedder=embedder,
            openai_base_url=_url(env, "DOCINGEST_OPENAI_BASE_URL", ("http", "https"))
            or "https://api.openai.com/v1",
            openai_api_key=openai_key,
            embed_model=env.get("DOCINGEST_EMBED_MODEL") or "text-embedding-3-small",
            embed_dimensions=dims,
            embed_rpm=rpm,
            embed_tpm=tpm,
            embed_price_per_mtok=_price(env, "DOCINGEST_EMBED_PRICE_PER_MTOK"),
            # at most the default retry budget + 1, so a lone failing job opens the circuit
            # (and waits) before it runs out of retries
            circuit_failures=_int(env, "DOCINGEST_CIRCUIT_FAILURES", 3),
            circuit_cooldown_s=_int(env, "DOCINGEST_CIRCUIT_COOLDOWN_SECONDS", 30),
            embed_quota_cooldown_s=_int(env, "DOCINGEST_EMBED_QUOTA_COOLDOWN_SECONDS", 900),
            embed_batch_size=_batch_size(env),
            vector_search=_choice(env, "DOCINGEST_VECTOR_SEARCH", "exact", _VECTOR_SEARCH),
            max_upload_bytes=_int(env, "DOCINGEST_MAX_UPLOAD_BYTES", 25 * 1024 * 1024),
            # requests over the cap are shed with 503 (api/shedding.py), not queued
            api_max_inflight=_int(env, "DOCINGEST_API_MAX_INFLIGHT", 64),
            max_pages=_int(env, "DOCINGEST_MAX_PAGES", 1000),
            parse_timeout_s=_int(env, "DOCINGEST_PARSE_TIMEOUT_SECONDS", 300),
            parse_memory_mb=_int(env, "DOCINGEST_PARSE_MEMORY_MB", 1536, minimum=256),
            parse_callback_timeout_s=_int(env, "DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS", 600),
            lease_seconds=_int(env, "DOCINGEST_LEASE_SECONDS", 60, minimum=5),
            max_retries=_int(env, "DOCINGEST_MAX_RETRIES", 3, minimum=0),
            log_format=_choice(env, "DOCINGEST_LOG_FORMAT", "console", _LOG_FORMATS),
            edge=_edge_limits(env),
            work=_work_limits(env),
            jwt_max_ttl_s=_int(env, "DOCINGEST_JWT_MAX_TTL_SECONDS", 86_400),
            audit_retention_days=_int(
                env,
                "DOCINGEST_AUDIT_RETENTION_DAYS",
                AUDIT_RETENTION_FLOOR_DAYS,
                minimum=AUDIT_RETENTION_FLOOR_DAYS,
            ),
            audit_noise_retention_days=_int(env, "DOCINGEST_AUDIT_NOISE_RETENTION_DAYS", 90),
            db_encryption_policy=_choice(
                env, "DOCINGEST_DB_ENCRYPTION_POLICY", "warn", _DB_ENCRYPTION_POLICIES
            ),
            db_encrypted_at_rest=_flag(env, "DOCINGEST_DB_ENCRYPTED_AT_REST"),
        )
