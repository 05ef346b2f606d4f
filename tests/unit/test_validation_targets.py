"""The validation targets judge measured numbers; a missing or broken phase never passes."""

from __future__ import annotations

from typing import Any

from docingest.ops.validation.targets import evaluate


def passing() -> dict[str, Any]:
    return {
        "reliability": {
            "documents": 29, "completed": 29, "lost": 0, "duplicated": 0,
            "expectation_mismatches": [],
        },
        "recovery": {
            "worker_kill_s": 12.0, "postgres_restart_s": 3.0,
            "parser_outage_s": 2.0, "embedder_outage_s": 1.5,
        },
        "predictability": {"cv": 0.04},
        "scaling": {"workers": [1, 2, 4, 8], "efficiency": [1.0, 0.97, 0.9, 0.85]},
        "disaster_recovery": {
            "rto_s": 3.0, "rpo_s": 2.0, "row_counts_match": True,
            "search_results_match": True, "reingest_recognised_as_duplicates": True,
            "in_flight_jobs": 4, "in_flight_jobs_completed": 4,
        },
        "security": {"probes": 38, "passed": 38},
        "determinism": {
            "reupload_same_ids": True, "reupload_rows_unchanged": True,
            "second_user_same_chunk_and_vector_hashes": True, "inputs_billed_for_repeats": 0,
            "retry_failed_status": "failed_embedding", "retry_chunks": 8,
            "retry_embedded_before_failure": 7, "retry_inputs_billed": 1,
            "retry_same_chunks_as_clean_upload": True,
        },
    }  # fmt: skip


def test_a_report_meeting_every_target_passes() -> None:
    verdicts = evaluate(passing())
    assert verdicts and all(v.passed for v in verdicts)


def test_each_shortfall_fails_its_target() -> None:
    breaks = [
        ("reliability", "completed", 28),
        ("reliability", "lost", 1),
        ("reliability", "duplicated", 2),
        ("recovery", "worker_kill_s", 61.0),
        ("recovery", "embedder_outage_s", -1.0),  # affected jobs did not complete
        ("predictability", "cv", 0.1),
        ("scaling", "efficiency", [1.0, 0.9, 0.8, 0.79]),
        ("security", "passed", 37),
        ("disaster_recovery", "search_results_match", False),
        ("disaster_recovery", "in_flight_jobs_completed", 3),
        ("determinism", "inputs_billed_for_repeats", 3),
        ("determinism", "retry_inputs_billed", 8),  # re-embedded what was stored
        ("determinism", "reupload_same_ids", False),
    ]
    for section, key, value in breaks:
        report = passing()
        report[section][key] = value
        failed = [v.target for v in evaluate(report) if not v.passed]
        assert len(failed) == 1, (section, key, failed)


def test_missing_or_errored_phases_fail() -> None:
    assert not any(v.passed for v in evaluate({}))
    report = passing()
    report["scaling"] = {"error": "TimeoutError", "detail": "8 workers did not start listening"}
    assert [v.passed for v in evaluate(report)].count(False) == 1
