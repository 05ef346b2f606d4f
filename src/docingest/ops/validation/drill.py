"""The disaster-recovery drill of `docingest validate` (issue 7): a backup taken while
workers embed, the schema, the vector extension and the blob store destroyed, a restore,
and the restored system checked to behave the same. RTO and RPO are measured, not set."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from docingest.ops.backup import row_counts
from docingest.ops.validation.stack import Stack
from docingest.ops.validation.traffic import upload_generated

QUERY = "deductible coinsurance for a specialist visit"


def disaster_recovery(stack: Stack, backup_dir: Path) -> dict[str, Any]:
    stack.restart_workers(2)
    with stack.client() as client:
        done = upload_generated(client, range(900_000, 900_003))
        stack.wait_terminal([u.job_id for u in done if u.job_id], 120)
        before = _search(client)
        stack.openai_control(latency_ms=1_500)  # keep jobs in flight while the backup runs
        in_flight = upload_generated(client, range(900_100, 900_102))
        in_flight_ids = [u.job_id for u in in_flight if u.job_id]
        stack.wait_claimed(in_flight_ids, 60)
        made = stack.run_cli("backup", "create", str(backup_dir))
        if made.returncode != 0:
            raise RuntimeError(f"backup create exited {made.returncode}")
        stack.set_workers(0)  # the disaster takes the workers too
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA docingest CASCADE")
            conn.execute("DROP EXTENSION vector")
        shutil.rmtree(stack.root / "home" / "blobs")
        destroyed_at = datetime.now(UTC)

        started = time.monotonic()
        restored = stack.run_cli("backup", "restore", str(backup_dir))
        if restored.returncode != 0:
            raise RuntimeError(f"backup restore exited {restored.returncode}")
        stack.restart_api()  # its pooled connections knew the dropped vector type
        rto = time.monotonic() - started
        rpo = (destroyed_at - datetime.fromisoformat(manifest["snapshot_at"])).total_seconds()

        counts_match = _row_counts(stack) == manifest["row_counts"]
        after = _search(client)
        again = upload_generated(client, range(900_000, 900_003))
        stack.openai_control(latency_ms=stack.settings.embed_latency_ms)
        stack.restart_workers(2)
        rows = stack.wait_terminal(in_flight_ids, 180)
    return {
        "disaster_recovery": {
            "rto_s": round(rto, 2),
            "rpo_s": round(rpo, 2),
            "row_counts_match": counts_match,
            "search_results_match": after == before and bool(before),
            "reingest_recognised_as_duplicates": all(u.duplicate for u in again),
            "in_flight_jobs_completed": sum(r["status"] == "complete" for r in rows),
            "in_flight_jobs": len(in_flight_ids),
        }
    }


def _search(client: Any) -> list[tuple[str, int]]:
    r = client.post("/v1/search", json={"query": QUERY, "k": 5})
    r.raise_for_status()
    return [(hit["chunk_id"], hit["chunk_ord"]) for hit in r.json()["results"]]


def _row_counts(stack: Stack) -> dict[str, int]:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        return row_counts(conn)
