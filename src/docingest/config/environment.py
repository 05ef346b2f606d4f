"""Every environment variable docingest reads (DESIGN.md §7), declared once with its type,
default, bounds and choices, and read by pydantic-settings.

One field per variable: `DOCINGEST_` + the field name in capitals, or the field's alias
(`AWS_*`, and `OPENAI_API_KEY` as the fallback of `DOCINGEST_OPENAI_API_KEY`). An empty
variable counts as unset. Secrets are `SecretStr` (their repr is `**********`), and
validation errors are built without the input (`hide_input_in_errors`), so a message can
never echo a secret. Checks that need two variables live in the model validator.

`read(env)` reads a given mapping instead of the process environment (tests, and the
environments `docingest validate` builds for its processes), through the same source.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from docingest.pipeline.stored_vector import MAX_DIMENSIONS

PREFIX = "DOCINGEST_"
#: Matryoshka prefixes of the shipped 256-dimension WordLlama weights the model was trained for
WORDLLAMA_DIMENSIONS = (64, 128, 256)
MIN_EMBED_TPM = 1000
#: HIPAA (45 CFR 164.316(b)(2)(i)) keeps documentation six years: 6 x 365 days + 2 leap days
AUDIT_RETENTION_FLOOR_DAYS = 2192


class ConfigError(ValueError):
    """A setting is missing or malformed: one line naming the variable, never its value."""


def _url(*schemes: str) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.query or parsed.path):
            raise ValueError(f"must be a URL starting with {' or '.join(schemes)}://")
        return value

    return AfterValidator(check)


def _storage(value: str | None) -> str | None:
    if value is not None and not value.startswith(("file://", "s3://")):
        raise ValueError("must start with file:// or s3://")
    return value


def _long_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value()) < 32:
        raise ValueError("must be at least 32 characters")
    return value


WebUrl = Annotated[str, _url("http", "https")]
Seconds = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=1)]
LongSecret = Annotated[SecretStr | None, AfterValidator(_long_secret)]


def _alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Environment(BaseSettings):
    """The raw settings, one per variable; `config.Settings` groups them for the code."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    # where things live
    home: str = "./.docingest"
    database_url: Annotated[str | None, _url("postgresql", "postgres")] = None
    storage_url: Annotated[str | None, AfterValidator(_storage)] = None
    s3_endpoint_url: Annotated[str | None, _url("http", "https")] = None
    aws_region: str | None = _alias("AWS_REGION", "AWS_DEFAULT_REGION")
    aws_access_key_id: SecretStr | None = _alias("AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = _alias("AWS_SECRET_ACCESS_KEY")
    aws_session_token: SecretStr | None = _alias("AWS_SESSION_TOKEN")
    # keys and secrets
    master_key: SecretStr | None = None
    master_key_previous: SecretStr | None = None  # retired keys, read-only
    jwt_secret: LongSecret = None
    webhook_secret: LongSecret = None
    jwt_issuer: str | None = None  # tokens must carry this `iss` (e.g. Supabase's auth URL)
    jwt_audience: str | None = None  # tokens must carry this `aud` (Supabase: authenticated)
    jwt_max_ttl_seconds: Seconds = 86_400
    public_url: WebUrl = "http://127.0.0.1:8000"
    # parsing
    parser: Literal["local", "llamaparse"] = "local"
    llamaparse_url: WebUrl = "https://api.cloud.llamaindex.ai"
    llamaparse_api_key: SecretStr | None = None
    max_pages: Count = 1000
    parse_timeout_seconds: Seconds = 300
    parse_memory_mb: Annotated[int, Field(ge=256)] = 1536
    parse_callback_timeout_seconds: Seconds = 600
    # embedding
    # the default is offline and semantic (clients/wordllama_embedder.py)
    embedder: Literal["wordllama", "hash", "openai"] = "wordllama"
    openai_base_url: WebUrl = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = _alias("DOCINGEST_OPENAI_API_KEY", "OPENAI_API_KEY")
    embed_model: str = "text-embedding-3-small"
    embed_dimensions: Count | None = None  # by embedder: see `_embedding`
    embed_rpm: Annotated[int, Field(ge=0)] = 0  # 0: unlimited
    embed_tpm: Annotated[int, Field(ge=0)] = 0  # 0: unlimited, else >= MIN_EMBED_TPM
    embed_price_per_mtok: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    # at most the default retry budget + 1, so a lone failing job opens the circuit (and
    # waits) before it runs out of retries
    circuit_failures: Count = 3
    circuit_cooldown_seconds: Seconds = 30
    embed_quota_cooldown_seconds: Seconds = 900
    embed_batch_size: Annotated[int, Field(ge=1, le=256)] = 256
    vector_search: Literal["exact", "index"] = "exact"
    # the worker
    lease_seconds: Annotated[int, Field(ge=5)] = 60
    max_retries: Annotated[int, Field(ge=0)] = 3
    # the densest corpus page holds 11,594 characters, the largest document 1.68 million
    max_page_chars: Count = 50_000
    max_document_chars: Count = 5_000_000
    max_chunks: Count = 10_000
    max_user_retries: Annotated[int, Field(ge=0)] = 3  # POST .../retry per job, over its life
    worker_statement_timeout_seconds: Seconds = 120
    # the HTTP edge
    max_upload_bytes: Count = 25 * 1024 * 1024
    api_max_inflight: Count = 64  # over it, requests are shed with 503 (api/shedding.py)
    api_header_timeout_seconds: Seconds = 10
    api_body_timeout_seconds: Seconds = 15
    api_body_min_bytes_per_second: Count = 1024
    api_max_connections_per_address: Count = 256
    api_anon_rate_per_second: Count = 20
    api_anon_burst: Count = 60
    api_anon_max_inflight_per_address: Count = 4
    api_anon_max_inflight: Count = 16
    api_user_max_inflight: Count = 8
    api_statement_timeout_seconds: Seconds = 15
    api_trusted_proxies: str | None = None
    # audit, logs, storage at rest
    audit_retention_days: Annotated[int, Field(ge=AUDIT_RETENTION_FLOOR_DAYS)] = (
        AUDIT_RETENTION_FLOOR_DAYS
    )
    audit_noise_retention_days: Count = 90
    log_format: Literal["json", "console"] = "console"
    db_encryption_policy: Literal["warn", "require"] = "warn"
    db_encrypted_at_rest: bool = False  # the operator's declaration (store/at_rest.py)

    @model_validator(mode="after")
    def _together(self) -> Self:
        """What one variable cannot say alone."""
        s3 = self.storage_url is not None and self.storage_url.startswith("s3://")
        if s3 and (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            missing = (
                "AWS_SECRET_ACCESS_KEY"
                if self.aws_secret_access_key is None
                else "AWS_ACCESS_KEY_ID"
            )
            raise ConfigError(f"{missing} must be set together with the other AWS key")
        if self.embedder == "openai" and self.openai_api_key is None:
            raise ConfigError(
                "DOCINGEST_OPENAI_API_KEY (or OPENAI_API_KEY) is required for the openai embedder"
            )
        if self.parser == "llamaparse" and self.llamaparse_api_key is None:
            raise ConfigError("DOCINGEST_LLAMAPARSE_API_KEY is required for the llamaparse parser")
        if 0 < self.embed_tpm < MIN_EMBED_TPM:  # one request must fit a whole chunk
            raise ConfigError(f"DOCINGEST_EMBED_TPM must be 0 (unlimited) or >= {MIN_EMBED_TPM}")
        if self.api_anon_burst < self.api_anon_rate_per_second:
            raise ConfigError(
                "DOCINGEST_API_ANON_BURST must be >= DOCINGEST_API_ANON_RATE_PER_SECOND"
            )
        self._check_dimensions()
        return self

    def _check_dimensions(self) -> None:
        dims = self.embed_dimensions
        if dims is None:
            return
        if self.embedder == "wordllama" and dims not in WORDLLAMA_DIMENSIONS:
            allowed = ", ".join(map(str, WORDLLAMA_DIMENSIONS))
            raise ConfigError(f"DOCINGEST_EMBED_DIMENSIONS must be one of {allowed} for wordllama")
        if dims > MAX_DIMENSIONS:
            raise ConfigError(
                f"DOCINGEST_EMBED_DIMENSIONS must be <= {MAX_DIMENSIONS} (pgvector halfvec index limit)"
            )

    @property
    def dimensions(self) -> int:
        """The embedding width: as set, else the embedder's own default."""
        if self.embed_dimensions is not None:
            return self.embed_dimensions
        return WORDLLAMA_DIMENSIONS[-1] if self.embedder == "wordllama" else 1536

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_MappingSource(settings_cls, _ENVIRON.get()),)

    @classmethod
    def variables(cls) -> list[str]:
        """Every variable name the model reads."""
        names: list[str] = []
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.extend(str(choice) for choice in alias.choices)
            else:
                names.append(PREFIX + name.upper())
        return names


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("docingest_environ", default=None)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over `environ` (None: the process's own)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None) -> None:
        self._environ = os.environ if environ is None else environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


@contextmanager
def _reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def read(environ: Mapping[str, str] | None = None) -> Environment:
    """The validated settings of `environ` (default: the process environment); the first
    problem raises `ConfigError`."""
    try:
        with _reading(environ):
            return Environment()
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0])) from None


def _variable(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else ""
    if name.upper().startswith(("AWS_", "OPENAI_", PREFIX)):
        return name.upper()
    return PREFIX + name.upper()


def _message(error: ErrorDetails) -> str:
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    cause = ctx.get("error")
    if isinstance(cause, ConfigError):
        return str(cause)  # a cross-variable check: its message names the variables
    kind = error["type"]
    text = {
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "float_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "bool_parsing": "must be true or false",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "literal_error": f"must be one of {str(ctx.get('expected', '')).replace(chr(39), '')}",
        "value_error": str(cause),
    }.get(kind, "is not valid")
    return f"{_variable(tuple(error['loc']))} {text}"
