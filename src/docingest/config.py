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

from docingest.clients.wordllama_embedder import SUPPORTED_DIMENSIONS as WORDLLAMA_DIMENSIONS


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable, never its value."""


_PARSERS = ("local", "llamaparse")
#: the first is the default: offline and semantic (clients/wordllama_embedder.py)
_EMBEDDERS = ("wordllama", "hash", "openai")
_LOG_FORMATS = ("json", "console")
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
    if dims > 2000:
        raise ConfigError("DOCINGEST_EMBED_DIMENSIONS must be <= 2000 (pgvector HNSW limit)")
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
    max_upload_bytes: int
    api_max_inflight: int
    max_pages: int
    parse_timeout_s: int
    parse_memory_mb: int
    parse_callback_timeout_s: int
    lease_seconds: int
    max_retries: int
    log_format: str

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
        )
