"""Composition root: turns Settings into the real parts (database URL, blob store, parser,
embedder, secrets). Nothing is built at import time."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from docingest.clients.embedders import Embedder, HashEmbedder, OpenAIEmbedder
from docingest.clients.llamaparse import LlamaParseClient
from docingest.clients.local_parser import LocalParser
from docingest.config import ConfigError, S3Settings, Settings
from docingest.store import migrate
from docingest.store.blobs import BlobStore, LocalBlobStore
from docingest.store.embedded_pg import start_embedded
from docingest.store.keys import MasterKey, load_master_key


def local_secret(home: Path, name: str) -> str:
    """A random secret kept in a 0600 file under DOCINGEST_HOME, created on first use, so that
    every local process (CLI, API, workers) agrees on it."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"{path} must not be readable by group or others (chmod 600)"
            ) from None
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        raise ConfigError(f"{path} is empty") from None
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    return value


def jwt_secret(settings: Settings) -> str:
    return settings.jwt_secret or local_secret(settings.home, "jwt.secret")


def webhook_secret(settings: Settings) -> str:
    return settings.webhook_secret or local_secret(settings.home, "webhook.secret")


def database_url(settings: Settings, *, migrate_schema: bool = True) -> str:
    """The configured database, or the embedded one (started now). Migrations applied when asked."""
    url = settings.database_url or start_embedded(settings.home)
    if migrate_schema:
        migrate.upgrade(url)
    return url


def blob_store(settings: Settings) -> BlobStore:
    try:
        key = load_master_key(settings.home, settings.master_key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if settings.s3 is not None:
        assert settings.storage_url is not None  # s3 is set only for s3:// URLs
        return _s3_blob_store(settings.storage_url, settings.s3, key)
    root = settings.home / "blobs"
    if settings.storage_url and settings.storage_url.startswith("file://"):
        root = Path(settings.storage_url.removeprefix("file://"))
    return LocalBlobStore(root, key)


def _s3_blob_store(url: str, s3: S3Settings, key: MasterKey) -> BlobStore:
    # Imported here: boto3 takes a noticeable time to import and only s3:// needs it.
    from docingest.store.blobs_s3 import S3BlobStore, make_s3_client, parse_s3_url

    try:
        location = parse_s3_url(url)
    except ValueError as exc:
        raise ConfigError(f"DOCINGEST_STORAGE_URL: {exc}") from None
    try:
        client = make_s3_client(
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
            session_token=s3.session_token,
        )
    except ValueError as exc:  # plain http to a non-loopback host
        raise ConfigError(f"DOCINGEST_S3_ENDPOINT_URL: {exc}") from None
    return S3BlobStore(client, location, key)


def embedder(settings: Settings) -> Embedder:
    built: Embedder
    if settings.embedder == "openai":
        assert settings.openai_api_key is not None  # enforced by Settings
        try:
            built = OpenAIEmbedder(
                settings.openai_base_url,
                settings.openai_api_key,
                model=settings.embed_model,
                dimensions=settings.embed_dimensions,
            )
        except ValueError as exc:  # e.g. plain http to a non-loopback host
            raise ConfigError(f"DOCINGEST_OPENAI_BASE_URL: {exc}") from None
    else:
        built = HashEmbedder(settings.embed_dimensions)
    built.max_batch_inputs = min(built.max_batch_inputs, settings.embed_batch_size)
    return built


def parser(settings: Settings) -> LocalParser | LlamaParseClient:
    if settings.parser == "llamaparse":
        assert settings.llamaparse_api_key is not None  # enforced by Settings
        try:
            return LlamaParseClient(settings.llamaparse_url, settings.llamaparse_api_key)
        except ValueError as exc:  # plain http to a non-loopback host
            raise ConfigError(f"DOCINGEST_LLAMAPARSE_URL: {exc}") from None
    return LocalParser(
        max_pages=settings.max_pages,
        timeout_s=float(settings.parse_timeout_s),
        memory_mb=settings.parse_memory_mb,
    )


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    dsn: str
    blobs: BlobStore
    embedder: Embedder
    jwt_secret: str
    webhook_secret: str


def runtime(settings: Settings, *, migrate_schema: bool = True) -> Runtime:
    return Runtime(
        settings=settings,
        dsn=database_url(settings, migrate_schema=migrate_schema),
        blobs=blob_store(settings),
        embedder=embedder(settings),
        jwt_secret=jwt_secret(settings),
        webhook_secret=webhook_secret(settings),
    )
