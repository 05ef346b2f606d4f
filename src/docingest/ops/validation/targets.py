"""The targets `docingest validate` holds the measured report to (issue 4, DESIGN.md §9):
the seed's, then ours where ours are stricter. Pure: a report dict in, verdicts out.

Status-read latency and embedding efficiency are measured and reported, not judged here:
their targets belong to benchmarks on a quiet machine (bench/status_latency.py,
bench/embedding_efficiency.py), while validate runs the fake services on the same cores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECOVERY_LIMIT_S = 60.0  # ours; the seed's is 5 minutes
CV_LIMIT = 0.10
SCALING_MIN_EFFICIENCY = 0.8  # at the largest worker count measured


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    passed: bool


def _recovery(value: object) -> bool:
    return isinstance(value, int | float) and 0 <= value < RECOVERY_LIMIT_S


def evaluate(report: dict[str, Any]) -> list[Verdict]:
    """One verdict per target; a missing section is a failed target, never a pass."""
    out: list[Verdict] = []
    rel = report.get("reliability") or {}
    out.append(
        Verdict(
            "100 % of valid documents complete",
            f"{rel.get('completed')}/{rel.get('documents')}",
            bool(rel.get("documents")) and rel.get("completed") == rel.get("documents"),
        )
    )
    out.append(Verdict("0 lost uploads", str(rel.get("lost")), rel.get("lost") == 0))
    out.append(Verdict("0 duplicated rows", str(rel.get("duplicated")), rel.get("duplicated") == 0))
    out.append(
        Verdict(
            "every corpus file ends as MANIFEST expects",
            f"{len(rel.get('expectation_mismatches', [None]))} mismatches",
            rel.get("expectation_mismatches") == [],
        )
    )
    rec = report.get("recovery") or {}
    for key in ("worker_kill_s", "postgres_restart_s", "parser_outage_s", "embedder_outage_s"):
        out.append(
            Verdict(
                f"recovery {key} < {RECOVERY_LIMIT_S:.0f} s",
                str(rec.get(key)),
                _recovery(rec.get(key)),
            )
        )
    cv = (report.get("predictability") or {}).get("cv")
    out.append(Verdict(f"CV < {CV_LIMIT}", str(cv), isinstance(cv, int | float) and cv < CV_LIMIT))
    eff = (report.get("scaling") or {}).get("efficiency") or []
    last = eff[-1] if eff else None
    out.append(
        Verdict(
            f"scaling efficiency >= {SCALING_MIN_EFFICIENCY} at the most workers",
            str(last),
            isinstance(last, int | float) and last >= SCALING_MIN_EFFICIENCY,
        )
    )
    det = report.get("determinism") or {}
    out.append(
        Verdict(
            "same bytes again: same ids, same chunk and vector hashes, nothing billed twice;"
            " a retry embeds only what is missing",
            f"{det.get('inputs_billed_for_repeats')} inputs billed for repeats,"
            f" {det.get('retry_inputs_billed')} on retry",
            all(
                det.get(k) is True
                for k in (
                    "reupload_same_ids",
                    "reupload_rows_unchanged",
                    "second_user_same_chunk_and_vector_hashes",
                    "retry_same_chunks_as_clean_upload",
                )
            )
            and det.get("inputs_billed_for_repeats") == 0
            and det.get("retry_failed_status") == "failed_embedding"
            and isinstance(det.get("retry_inputs_billed"), int)
            and det.get("retry_inputs_billed", 0)
            == det.get("retry_chunks", 0) - det.get("retry_embedded_before_failure", 0)
            > 0,
        )
    )
    dr = report.get("disaster_recovery") or {}
    same = ("row_counts_match", "search_results_match", "reingest_recognised_as_duplicates")
    out.append(
        Verdict(
            "restore after disaster: same rows, same search, duplicates recognised,"
            " in-flight jobs complete",
            f"RTO {dr.get('rto_s')} s, RPO {dr.get('rpo_s')} s",
            all(dr.get(k) is True for k in same)
            and bool(dr.get("in_flight_jobs"))
            and dr.get("in_flight_jobs_completed") == dr.get("in_flight_jobs"),
        )
    )
    sec = report.get("security") or {}
    out.append(
        Verdict(
            "all security probes pass",
            f"{sec.get('passed')}/{sec.get('probes')}",
            bool(sec.get("probes")) and sec.get("passed") == sec.get("probes"),
        )
    )
    return out
