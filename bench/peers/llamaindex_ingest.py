"""Runs inside the LlamaIndex peer venv (bench/peers/run.py starts it): one
`IngestionPipeline` run (SentenceSplitter -> OpenAIEmbedding -> PGVectorStore) over markdown
files, as documented. Prints one JSON line: ok, error class, seconds, rows in its table.

With --docstore DIR the pipeline keeps a persisted `SimpleDocumentStore` (the documented way
to skip unchanged documents on a re-run, strategy UPSERTS); without it, nothing is remembered.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sqlalchemy
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.vector_stores.postgres import PGVectorStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=Path, required=True)
    ap.add_argument("--pg-host", required=True, help="unix socket directory")
    ap.add_argument("--schema", required=True)
    ap.add_argument("--fake", required=True, help="fake OpenAI base URL, ending in /v1")
    ap.add_argument("--dims", type=int, default=256)
    ap.add_argument("--docstore", type=Path, default=None)
    args = ap.parse_args()
    sync_url = f"postgresql+psycopg2://postgres@/postgres?host={args.pg_host}"
    store = PGVectorStore.from_params(
        connection_string=sync_url,
        async_connection_string=f"postgresql+asyncpg://postgres@/postgres?host={args.pg_host}",
        schema_name=args.schema,
        table_name="chunks",
        embed_dim=args.dims,
        hnsw_kwargs={
            "hnsw_m": 16,
            "hnsw_ef_construction": 64,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )
    docstore_file = args.docstore / "docstore.json" if args.docstore else None
    docstore = None
    if docstore_file is not None:
        docstore = (
            SimpleDocumentStore.from_persist_path(str(docstore_file))
            if docstore_file.exists()
            else SimpleDocumentStore()
        )
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=512, chunk_overlap=50),
            OpenAIEmbedding(
                model="text-embedding-3-small",
                dimensions=args.dims,
                api_base=args.fake,
                api_key="sk-bench",
                max_retries=2,
            ),
        ],
        vector_store=store,
        docstore=docstore,
    )
    docs = [
        Document(text=p.read_text(encoding="utf-8"), id_=p.name)
        for p in sorted(args.docs.glob("*.md"))
    ]
    started = time.perf_counter()
    error = None
    try:
        pipeline.run(documents=docs)
    except Exception as exc:  # the whole run's outcome is what is measured
        error = type(exc).__name__
    seconds = time.perf_counter() - started
    if docstore is not None and docstore_file is not None:
        docstore.persist(str(docstore_file))
    engine = sqlalchemy.create_engine(sync_url)
    with engine.connect() as conn:
        exists = conn.execute(
            sqlalchemy.text("SELECT to_regclass(:t) IS NOT NULL"),
            {"t": f"{args.schema}.data_chunks"},
        ).scalar_one()
        rows = (
            conn.execute(
                sqlalchemy.text(f'SELECT count(*) FROM "{args.schema}".data_chunks')
            ).scalar_one()
            if exists
            else 0
        )
    print(json.dumps({"ok": error is None, "error": error, "seconds": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
