"""What the API process holds for its lifetime (pool, blob store, embedder, secrets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from docingest.api.admission import Lanes
from docingest.api.auth import TokenPolicy
from docingest.api.recent import Recent
from docingest.api.refusals import RefusalLog
from docingest.clients.embedders import Embedder
from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn
from docingest.store.vacuum import VacuumAfterDeletes
from docingest.store.vector_search import Strategy


@dataclass
class AppState:
    pool: AsyncConnectionPool[DictConn]
    blobs: BlobStore
    embedder: Embedder
    tokens: TokenPolicy
    max_upload_bytes: int
    webhook_secret: str = field(repr=False)
    refusals: RefusalLog  # anonymous refusals, aggregated per address and minute
    lanes: Lanes  # admission counters (/readyz reports saturation)
    max_document_chars: int  # bounds the markdown a signed callback may carry
    max_user_retries: int  # retries a user may ask for per job, over its whole life
    vacuum: VacuumAfterDeletes  # deletes ask for a VACUUM of the document tables
    # /readyz's database answer and /metrics' queue gauges, recomputed at most once a second
    readiness: Recent[tuple[int, str | None]] = field(default_factory=Recent)
    queue_gauges: Recent[bytes] = field(default_factory=Recent)
    vector_search: Strategy = Strategy.EXACT
