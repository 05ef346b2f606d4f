"""Settings read once from the environment (DESIGN.md §7), validated strictly.

`environment.py` declares and validates every variable (pydantic-settings); this module
groups them into what the code uses. A bad value stops start-up with one line naming the
variable (`ConfigError`); secrets stay `SecretStr` until the one place that uses them, and
are never echoed back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from docingest.config.environment import (
    AUDIT_RETENTION_FLOOR_DAYS,
    MIN_EMBED_TPM,
    WORDLLAMA_DIMENSIONS,
    ConfigError,
    Environment,
    read,
)

__all__ = [
    "AUDIT_RETENTION_FLOOR_DAYS",
    "MIN_EMBED_TPM",
    "WORDLLAMA_DIMENSIONS",
    "ConfigError",
    "EdgeLimits",
    "S3Settings",
    "Settings",
    "WorkLimits",
    "revealed",
]


@dataclass(frozen=True)
class S3Settings:
    """How to reach an s3:// blob store (`store/blobs_s3.py`): the endpoint of an
    S3-compatible service (Supabase Storage, MinIO, R2; unset for AWS) and the standard AWS
    variables. Unset credentials come from boto3's default chain (profile, instance role)."""

    endpoint_url: str | None
    region: str | None
    access_key_id: SecretStr | None
    secret_access_key: SecretStr | None
    session_token: SecretStr | None


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


@dataclass(frozen=True)
class WorkLimits:
    """What one document may cost the worker (named error codes when exceeded)."""

    max_page_chars: int = 50_000  # extracted text of one page (`text_limit`)
    max_document_chars: int = 5_000_000  # markdown of one document (`text_limit`)
    max_chunks: int = 10_000  # chunks of one document (`too_many_chunks`)
    max_user_retries: int = 3  # POST .../retry accepted per job, over its whole life
    statement_timeout_s: int = 120  # every worker database statement


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    storage_url: str | None
    s3: S3Settings | None  # set when storage_url is s3://
    master_key: SecretStr | None
    master_key_previous: SecretStr | None  # retired keys, read-only
    jwt_secret: SecretStr | None
    webhook_secret: SecretStr | None
    jwt_issuer: str | None  # when set, tokens must carry this `iss` (e.g. Supabase's auth URL)
    jwt_audience: str | None  # when set, tokens must carry this `aud` (Supabase: authenticated)
    public_url: str
    parser: str
    llamaparse_url: str
    llamaparse_api_key: SecretStr | None
    embedder: str
    openai_base_url: str
    openai_api_key: SecretStr | None
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
        """Read `env` (default: the process environment); raises `ConfigError`."""
        return cls.from_environment(read(env))

    @classmethod
    def from_environment(cls, e: Environment) -> Settings:
        s3 = e.storage_url is not None and e.storage_url.startswith("s3://")
        return cls(
            home=Path(e.home).expanduser().resolve(),
            database_url=e.database_url,
            storage_url=e.storage_url,
            s3=S3Settings(
                endpoint_url=e.s3_endpoint_url,
                region=e.aws_region,
                access_key_id=e.aws_access_key_id,
                secret_access_key=e.aws_secret_access_key,
                session_token=e.aws_session_token,
            )
            if s3
            else None,
            master_key=e.master_key,
            master_key_previous=e.master_key_previous,
            jwt_secret=e.jwt_secret,
            webhook_secret=e.webhook_secret,
            jwt_issuer=e.jwt_issuer,
            jwt_audience=e.jwt_audience,
            public_url=e.public_url,
            parser=e.parser,
            llamaparse_url=e.llamaparse_url,
            llamaparse_api_key=e.llamaparse_api_key,
            embedder=e.embedder,
            openai_base_url=e.openai_base_url,
            openai_api_key=e.openai_api_key,
            embed_model=e.embed_model,
            embed_dimensions=e.dimensions,
            embed_rpm=e.embed_rpm or None,
            embed_tpm=e.embed_tpm or None,
            embed_price_per_mtok=e.embed_price_per_mtok,
            circuit_failures=e.circuit_failures,
            circuit_cooldown_s=e.circuit_cooldown_seconds,
            embed_quota_cooldown_s=e.embed_quota_cooldown_seconds,
            embed_batch_size=e.embed_batch_size,
            vector_search=e.vector_search,
            max_upload_bytes=e.max_upload_bytes,
            api_max_inflight=e.api_max_inflight,
            max_pages=e.max_pages,
            parse_timeout_s=e.parse_timeout_seconds,
            parse_memory_mb=e.parse_memory_mb,
            parse_callback_timeout_s=e.parse_callback_timeout_seconds,
            lease_seconds=e.lease_seconds,
            max_retries=e.max_retries,
            log_format=e.log_format,
            edge=EdgeLimits(
                header_timeout_s=e.api_header_timeout_seconds,
                body_timeout_s=e.api_body_timeout_seconds,
                body_min_rate=e.api_body_min_bytes_per_second,
                connections_per_address=e.api_max_connections_per_address,
                anon_rate=e.api_anon_rate_per_second,
                anon_burst=e.api_anon_burst,
                anon_inflight_per_address=e.api_anon_max_inflight_per_address,
                anon_inflight=e.api_anon_max_inflight,
                user_inflight=e.api_user_max_inflight,
                statement_timeout_s=e.api_statement_timeout_seconds,
                trusted_proxies=e.api_trusted_proxies,
            ),
            work=WorkLimits(
                max_page_chars=e.max_page_chars,
                max_document_chars=e.max_document_chars,
                max_chunks=e.max_chunks,
                max_user_retries=e.max_user_retries,
                statement_timeout_s=e.worker_statement_timeout_seconds,
            ),
            jwt_max_ttl_s=e.jwt_max_ttl_seconds,
            audit_retention_days=e.audit_retention_days,
            audit_noise_retention_days=e.audit_noise_retention_days,
            db_encryption_policy=e.db_encryption_policy,
            db_encrypted_at_rest=e.db_encrypted_at_rest,
        )


def revealed(secret: SecretStr | None) -> str | None:
    """A secret's value, at the one place that uses it."""
    return None if secret is None else secret.get_secret_value()
