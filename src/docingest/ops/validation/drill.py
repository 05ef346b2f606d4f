"""The disaster-recovery drill of `docingest validate` (issue 7): a backup taken while jobs
are provably mid-embedding, the schema, the vector extension and the blob store destroyed,
a restore, and the restored system checked to behave the same.

What it measures, and what it does not:
- RTO: the wall time of `docingest backup restore` plus the API's restart, measured.
- RPO is a property of the backup schedule, not of this drill: with backups every N minutes
  (the systemd timer and the Kubernetes CronJob in deploy/, read here) a disaster loses at
  most N minutes plus one backup's duration (measured here). The drill's own gap between
  its backup and its disaster is reported as `drill_backup_to_disaster_s`, not as an RPO.
- The restored job rows are the snapshot's: at least one in-flight job must be in an
  embedding state there, which proves the backup was taken mid-embedding, and every
  in-flight job must complete after the restore.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from docingest.ops.backup import row_counts
from docingest.ops.validation import faults
from docingest.ops.validation.stack import EMBEDDING, Stack
from docingest.ops.validation.traffic import upload_generated

QUERY = "deductible coinsurance for a specialist visit"
HANG_S = 12.0  # the embedding calls in flight during the backup (the client gives up at 30 s)
SYSTEMD_TIMER = "deploy/systemd/docingest-backup.timer"
K8S_CRONJOB = "deploy/k8s/backup-cronjob.yaml"


def schedule_minutes(repo: Path) -> dict[str, int | None]:
    """Backup interval in minutes from each deploy file (None when missing or unreadable):
    `OnCalendar=*:0/N` in the timer, `*/N * * * *` in the CronJob."""
    found: dict[str, int | None] = {}
    timer = repo / SYSTEMD_TIMER
    m = re.search(r"^OnCalendar=\*:0/(\d+)\s*$", _read(timer), re.MULTILINE)
    found[SYSTEMD_TIMER] = int(m.group(1)) if m else None
    m = re.search(r"schedule:\s*\"\*/(\d+) \* \* \* \*\"", _read(repo / K8S_CRONJOB))
    found[K8S_CRONJOB] = int(m.group(1)) if m else None
    return found


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def run(stack: Stack, backup_dir: Path, repo: Path) -> dict[str, Any]:
    stack.restart_workers(2)
    stack.reset_latencies()
    with stack.client() as client:
        done = upload_generated(client, range(900_000, 900_003))
        stack.wait_terminal([u.job_id for u in done if u.job_id], 180)
        before = _search(client)
        hang_before = stack.openai_stats()["faults_injected"].get("hang", 0)
        stack.openai_control(hang_next=2, hang_seconds=HANG_S)  # a slow provider call
        in_flight = upload_generated(client, range(900_100, 900_102))
        in_flight_ids = [u.job_id for u in in_flight if u.job_id]
        _wait_embedding(stack, in_flight_ids)
        backup_started = time.monotonic()
        made = stack.run_cli("backup", "create", str(backup_dir))
        backup_s = time.monotonic() - backup_started
        if made.returncode != 0:
            raise RuntimeError(f"backup create exited {made.returncode}")
        # the disaster takes the workers and the API too (a running API would also write its
        # aggregated refusals into the restored database before the counts are compared)
        stack.set_workers(0)
        stack.stop_api()
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA docingest CASCADE")
            conn.execute("DROP EXTENSION vector")
        shutil.rmtree(stack.root / "home" / "blobs")
        destroyed_at = datetime.now(UTC)

        started = time.monotonic()
        restored = stack.run_cli("backup", "restore", str(backup_dir))
        if restored.returncode != 0:
            raise RuntimeError(f"backup restore exited {restored.returncode}")
        stack.start_api()
        rto = time.monotonic() - started
        snapshot_at = _snapshot_at(backup_dir)

        now, then = _row_counts(stack), _manifest_counts(backup_dir)
        counts_differ = sorted(t for t in now.keys() | then.keys() if now.get(t) != then.get(t))
        restored_statuses = sorted(r["status"] for r in stack.jobs(in_flight_ids))
        after = _search(client)
        again = upload_generated(client, range(900_000, 900_003))
        stack.openai_control(hang_next=0)
        stack.restart_workers(2)
        rows = stack.wait_terminal(in_flight_ids, 300)
    hangs = stack.openai_stats()["faults_injected"].get("hang", 0) - hang_before
    schedule = schedule_minutes(repo)
    fault = faults.Fault(
        "disaster_recovery", "backup while an embedding call is in flight, then destruction",
        1, int(hangs >= 1 and bool(set(restored_statuses) & set(EMBEDDING))),
        f"fake_openai held {hangs} call(s); restored in-flight statuses {restored_statuses}",
    )  # fmt: skip
    return {
        "disaster_recovery": {
            "rto_s": round(rto, 2),
            "backup_s": round(backup_s, 2),
            "backup_schedule_min": schedule,
            "rpo_bound_s": _rpo_bound(schedule, backup_s),
            "drill_backup_to_disaster_s": round((destroyed_at - snapshot_at).total_seconds(), 2),
            "in_flight_statuses_in_backup": restored_statuses,
            "row_counts_match": not counts_differ,
            "row_counts_differ": counts_differ,  # table names only
            "search_results_match": after == before and bool(before),
            "reingest_recognised_as_duplicates": all(u.duplicate for u in again),
            "in_flight_jobs_completed": sum(r["status"] == "complete" for r in rows),
            "in_flight_jobs": len(in_flight_ids),
            "settings": {**stack.describe_settings(), "workers": 2},
        },
        "faults": faults.table([fault]),
    }


def _rpo_bound(schedule: dict[str, int | None], backup_s: float) -> float | None:
    """Worst-case loss with the scheduled backups: one interval plus one backup's duration
    (a disaster just before the next backup completes loses everything since the previous
    one's snapshot). None when the deploy files disagree or lack a schedule."""
    minutes = set(schedule.values())
    if len(minutes) != 1 or None in minutes:
        return None
    [every] = minutes
    assert every is not None
    return round(every * 60 + backup_s, 1)


def _wait_embedding(stack: Stack, job_ids: list[str]) -> None:
    """Until every in-flight job is in an embedding state (its call to the provider hangs)."""
    deadline = time.monotonic() + 120
    while not all(r["status"] in EMBEDDING for r in stack.jobs(job_ids)):
        if time.monotonic() > deadline:
            raise TimeoutError("the in-flight jobs did not all reach an embedding state")
        time.sleep(0.05)  # poll interval; the condition is the job rows


def _snapshot_at(backup_dir: Path) -> datetime:
    import json

    manifest = json.loads((backup_dir / "manifest.json").read_text())
    return datetime.fromisoformat(manifest["snapshot_at"])


def _manifest_counts(backup_dir: Path) -> dict[str, int]:
    import json

    counts: dict[str, int] = json.loads((backup_dir / "manifest.json").read_text())["row_counts"]
    return counts


def _search(client: Any) -> list[tuple[str, int]]:
    r = client.post("/v1/search", json={"query": QUERY, "k": 5})
    r.raise_for_status()
    return [(hit["chunk_id"], hit["chunk_ord"]) for hit in r.json()["results"]]


def _row_counts(stack: Stack) -> dict[str, int]:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        return row_counts(conn)
