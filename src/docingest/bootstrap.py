"""Composition root: turns Settings into the real parts (database URL, blob store, parser,
embedder, secrets). Nothing is built at import time."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from docingest.clients.embedders import Embedder, HashEmbedder, OpenAIEmbedder
from docingest.clients.llamaparse import LlamaParseClient
from docingest.clients.local_parser import LocalParser
from docingest.clients.wordllama_embedder import WordLlamaEmbedder
from docingest.config import ConfigError, S3Settings, Settings, revealed
from docingest.domain import server_support
from docingest.store import at_rest, migrate
from docingest.store.blobs import BlobStore, LocalBlobStore
from docingest.store.embedded_pg import start_embedded
from docingest.store.keys import KeyFiles, MasterKey, load_master_key, load_previous_keys

DB_RESTART_GRACE_S = 30.0
_RESTART_SIGNS = ("starting up", "shutting down", "Connection refused", "No such file or directory")


def local_secret(home: Path, name: str) -> str:
    """A random secret kept in a 0600 file under DOCINGEST_HOME, created on first use, so that
    every local process (CLI, API, workers) agrees on it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    return revealed(settings.jwt_secret) or local_secret(settings.home, "jwt.secret")


def webhook_secret(settings: Settings) -> str:
    return revealed(settings.webhook_secret) or local_secret(settings.home, "webhook.secret")


def database_url(settings: Settings, *, migrate_schema: bool = True) -> str:
    """The configured database, or the embedded one (started now). Migrations applied when asked.

    The URL reaches psycopg unchanged, so its `sslmode` (and every other libpq parameter)
    holds. A configured database that refuses the connection (down, TLS required but not
    offered, bad credentials) stops start-up with one ConfigError line without the password.
    """
    url = settings.database_url or start_embedded(settings.home)
    deadline = time.monotonic() + DB_RESTART_GRACE_S
    while True:
        try:
            check_server(url)
            if migrate_schema:
                migrate.upgrade(url)
            return url
        except psycopg.OperationalError as exc:
            if _restarting(exc) and time.monotonic() < deadline:
                time.sleep(0.5)  # retry interval while the server restarts
                continue
            reason = _without_password(exc, url)
            raise ConfigError(f"DOCINGEST_DATABASE_URL: cannot connect: {reason}") from None


def check_server(url: str) -> None:
    """Stop start-up with one line when the server is older than docingest supports
    (`domain/server_support.py`), before any migration touches it."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int,"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')"
        ).fetchone()
    assert row is not None
    reason = server_support.problem(int(row[0]), row[1], row[2])
    if reason is not None:
        raise ConfigError(f"DOCINGEST_DATABASE_URL: {reason}")


def _restarting(exc: psycopg.OperationalError) -> bool:
    """A server that is starting, stopping or briefly not listening: wait, it is not a
    configuration error (a worker started during a Postgres restart must not exit)."""
    text = str(exc)
    return any(sign in text for sign in _RESTART_SIGNS)


def _without_password(exc: Exception, url: str) -> str:
    """libpq's reason (first line), with the URL's password masked should it ever appear."""
    reason = (str(exc).strip().splitlines() or ["connection failed"])[0]
    password = conninfo_to_dict(url).get("password")
    return reason.replace(str(password), "***") if password else reason


def blob_store(settings: Settings) -> BlobStore:
    """The blob store with the current master key and the retired ones still readable; with
    key files (no DOCINGEST_MASTER_KEY) it follows `docingest keys rotate` while running."""
    env_key = settings.master_key is not None
    try:
        key = load_master_key(settings.home, revealed(settings.master_key))
        previous = load_previous_keys(
            settings.home, revealed(settings.master_key_previous), env_key=env_key
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    source = None if env_key else KeyFiles(settings.home)
    if settings.s3 is not None:
        assert settings.storage_url is not None  # s3 is set only for s3:// URLs
        return _s3_blob_store(settings.storage_url, settings.s3, key, previous, source)
    root = settings.home / "blobs"
    if settings.storage_url and settings.storage_url.startswith("file://"):
        root = Path(settings.storage_url.removeprefix("file://"))
    return LocalBlobStore(root, key, old_keys=previous, key_source=source)


def _s3_blob_store(
    url: str,
    s3: S3Settings,
    key: MasterKey,
    previous: list[MasterKey],
    source: KeyFiles | None,
) -> BlobStore:
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
            access_key_id=revealed(s3.access_key_id),
            secret_access_key=revealed(s3.secret_access_key),
            session_token=revealed(s3.session_token),
        )
    except ValueError as exc:  # plain http to a non-loopback host
        raise ConfigError(f"DOCINGEST_S3_ENDPOINT_URL: {exc}") from None
    return S3BlobStore(client, location, key, old_keys=previous, key_source=source)


def embedder(settings: Settings) -> Embedder:
    built: Embedder
    if settings.embedder == "openai":
        assert settings.openai_api_key is not None  # enforced by Settings
        try:
            built = OpenAIEmbedder(
                settings.openai_base_url,
                settings.openai_api_key.get_secret_value(),
                model=settings.embed_model,
                dimensions=settings.embed_dimensions,
            )
        except ValueError as exc:  # e.g. plain http to a non-loopback host
            raise ConfigError(f"DOCINGEST_OPENAI_BASE_URL: {exc}") from None
    elif settings.embedder == "hash":
        built = HashEmbedder(settings.embed_dimensions)
    else:
        built = WordLlamaEmbedder(settings.embed_dimensions)
    built.max_batch_inputs = min(built.max_batch_inputs, settings.embed_batch_size)
    return built


def parser(settings: Settings) -> LocalParser | LlamaParseClient:
    if settings.parser == "llamaparse":
        assert settings.llamaparse_api_key is not None  # enforced by Settings
        try:
            return LlamaParseClient(
                settings.llamaparse_url, settings.llamaparse_api_key.get_secret_value()
            )
        except ValueError as exc:  # plain http to a non-loopback host
            raise ConfigError(f"DOCINGEST_LLAMAPARSE_URL: {exc}") from None
    return LocalParser(
        max_pages=settings.max_pages,
        timeout_s=float(settings.parse_timeout_s),
        memory_mb=settings.parse_memory_mb,
        max_page_chars=settings.work.max_page_chars,
        max_document_chars=settings.work.max_document_chars,
    )


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    dsn: str
    blobs: BlobStore
    embedder: Embedder
    jwt_secret: str
    webhook_secret: str
    at_rest: at_rest.AtRest


def runtime(settings: Settings, *, migrate_schema: bool = True) -> Runtime:
    """The parts, then the at-rest policy (store/at_rest.py): under `require`, a database whose
    storage is not shown or declared encrypted stops start-up with one line."""
    # Arguments are evaluated in order: a bad client setting stops start-up before any file is
    # created, a bad key before an embedded server starts or a migration is applied.
    return Runtime(
        settings=settings,
        embedder=embedder(settings),
        blobs=blob_store(settings),
        jwt_secret=jwt_secret(settings),
        webhook_secret=webhook_secret(settings),
        dsn=database_url(settings, migrate_schema=migrate_schema),
        at_rest=at_rest.enforce(settings),
    )
