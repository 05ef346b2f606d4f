"""What a stage needs, handed in by the composition root (bootstrap.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from docingest.clients.embedders import Embedder
from docingest.clients.llamaparse import RemoteJobStatus
from docingest.clients.pdf_markdown import ParsedPdf
from docingest.config import WorkLimits
from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn
from docingest.worker.breaker import Breaker
from docingest.worker.embed_batcher import EmbeddingBatcher
from docingest.worker.embed_gate import EmbeddingGate


class Parser(Protocol):
    name: str
    version: str

    async def parse(self, data: bytes) -> ParsedPdf: ...


@runtime_checkable
class RemoteParser(Protocol):
    """A parser that runs jobs elsewhere and calls back (LlamaParse)."""

    name: str
    version: str

    async def submit(
        self, data: bytes, *, job_id: UUID, document_id: UUID, webhook_url: str | None
    ) -> str: ...

    async def status(self, external_id: str) -> RemoteJobStatus | None: ...

    async def markdown(self, external_id: str) -> str: ...


@dataclass(frozen=True)
class CallbackSettings:
    """Where parse callbacks reach our API, the secret their tokens derive from, and how
    long a submitted job waits for its callback before the reconciler polls the parser."""

    public_url: str
    webhook_secret: str = field(repr=False)
    wait_s: float = 600.0


@dataclass(frozen=True)
class StageContext:
    pool: AsyncConnectionPool[DictConn]
    blobs: BlobStore
    parser: Parser | RemoteParser
    embedder: Embedder
    worker_id: str
    chunk_target_tokens: int = 400
    chunk_max_tokens: int = 512
    callbacks: CallbackSettings | None = None
    embed_gate: EmbeddingGate | None = None  # None: unlimited budget, default breaker
    embed_batcher: EmbeddingBatcher | None = None  # the worker's; None: one per stage run
    parser_breaker: Breaker | None = None  # remote parser only; None: default policy
    work: WorkLimits = field(default_factory=WorkLimits)  # text and chunk caps
