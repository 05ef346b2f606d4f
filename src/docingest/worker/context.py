"""What a stage needs, handed in by the composition root (bootstrap.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from docingest.clients.embedders import Embedder
from docingest.clients.pdf_markdown import ParsedPdf
from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn


class Parser(Protocol):
    name: str
    version: str

    async def parse(self, data: bytes) -> ParsedPdf: ...


@dataclass(frozen=True)
class StageContext:
    pool: AsyncConnectionPool[DictConn]
    blobs: BlobStore
    parser: Parser
    embedder: Embedder
    worker_id: str
    chunk_target_tokens: int = 400
    chunk_max_tokens: int = 512
