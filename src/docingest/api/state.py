"""What the API process holds for its lifetime (pool, blob store, embedder, secrets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from docingest.clients.embedders import Embedder
from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn
from docingest.store.vector_search import Strategy


@dataclass
class AppState:
    pool: AsyncConnectionPool[DictConn]
    blobs: BlobStore
    embedder: Embedder
    jwt_secret: str
    max_upload_bytes: int
    webhook_secret: str = field(repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    vector_search: Strategy = Strategy.EXACT
