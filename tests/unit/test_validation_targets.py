"""The validation targets judge measured numbers; a missing or broken phase never passes,
every verdict carries its settings, and timing verdicts are told apart from correctness."""

from __future__ import annotations

from typing import Any

from docingest.ops.validation.targets import evaluate

SETTINGS = {"lease_s": 60, "circuit_cooldown_s": 30, "workers": 2}


def passing() -> dict[str, Any]:
    return {
        "reliability": {
            "documents": 29, "completed": 29, "lost": 0, "expectation_mismatches": [],
            "settings": SETTINGS,
        },
        "duplicates": {
            "inputs_billed": 400, "distinct_texts_stored": 410, "inputs_per_distinct_text": 0.9756,
            "inputs_billed_again_seen_by_provider": 0, "documents_checked": 29,
            "chunks_checked": 420, "documents_differing": [],
        },
        "recovery": {
            "worker_kill_s": {"samples": [4.1, 5.0, 6.2, 3.9, 4.4], "n": 5, "median": 4.4,
                              "max": 6.2},
            "postgres_restart_s": {"samples": [3.0, 4.0, 9.5, 5.1, 3.3], "n": 5, "median": 4.0,
                                   "max": 9.5},
            "parser_outage_s": 31.0, "embedder_outage_s": 28.5, "outage_hold_s": 30.0,
            "settings": SETTINGS,
        },
        "predictability": {
            "documents": 23, "completed": 23,
            "s_per_page": {"n": 23, "p50": 0.25, "p90": 0.6, "max": 1.9, "cv": 1.2},
            "e2e_per_provider_s": {"n": 23, "p50": 1.13, "max": 1.3, "cv": 0.06},
            "settings": SETTINGS,
        },
        "scaling": {
            "io_bound": {"workers": [1, 2, 4, 8], "efficiency": [1.0, 0.97, 0.9, 0.85],
                         "settings": SETTINGS},
            "cpu_bound": {"workers": [1, 2], "efficiency": [1.0, 0.9], "settings": SETTINGS},
        },
        "disaster_recovery": {
            "rto_s": 3.0, "backup_s": 2.5, "rpo_bound_s": 902.5,
            "backup_schedule_min": {"deploy/systemd/docingest-backup.timer": 15,
                                    "deploy/k8s/backup-cronjob.yaml": 15},
            "row_counts_match": True, "search_results_match": True,
            "reingest_recognised_as_duplicates": True,
            "in_flight_jobs": 2, "in_flight_jobs_completed": 2, "settings": SETTINGS,
        },
        "security": {"probes": 38, "passed": 38, "settings": SETTINGS},
        "determinism": {
            "reupload_same_ids": True, "reupload_rows_unchanged": True,
            "second_user_same_chunk_and_vector_hashes": True, "inputs_billed_for_repeats": 0,
            "retry_failed_status": "failed_embedding", "retry_chunks": 8,
            "retry_embedded_before_failure": 7, "retry_inputs_billed": 1,
            "retry_same_chunks_as_clean_upload": True, "settings": SETTINGS,
        },
        "faults": [
            {"phase": "recovery", "fault": "worker SIGKILL", "armed": 5, "served": 5,
             "evidence": "exit -9", "happened": True},
        ],
    }  # fmt: skip


def test_a_report_meeting_every_target_passes_and_names_its_settings() -> None:
    verdicts = evaluate(passing())
    assert verdicts and all(v.passed for v in verdicts)
    assert all(v.settings and v.settings != "not recorded" for v in verdicts)
    assert {v.kind for v in verdicts} == {"correctness", "timing"}
    timing = {v.target.split(":")[0].split(" <")[0] for v in verdicts if v.kind == "timing"}
    assert any("worker_kill_s" in t for t in timing) and any("scaling" in t for t in timing)


def test_each_shortfall_fails_its_target() -> None:
    kill = {"samples": [4.0, 11.0], "n": 2, "median": 7.5, "max": 11.0}
    restart_failed = {"samples": [3.0, -1.0], "n": 2, "median": 1.0, "max": -1.0}
    breaks: list[tuple[str, str, Any]] = [
        ("reliability", "completed", 28),
        ("reliability", "lost", 1),
        ("duplicates", "inputs_per_distinct_text", 1.02),
        ("duplicates", "inputs_billed_again_seen_by_provider", 3),
        ("duplicates", "documents_differing", [{"document_id": "d", "problem": "p"}]),
        ("recovery", "worker_kill_s", kill),  # the max is judged, not the median
        ("recovery", "postgres_restart_s", restart_failed),  # a sample that never recovered
        ("recovery", "embedder_outage_s", -1.0),
        ("predictability", "completed", 22),  # a document that did not complete
        ("predictability", "e2e_per_provider_s", {"n": 23, "cv": 0.1}),
        ("scaling", "io_bound", {"workers": [1, 2, 4, 8], "efficiency": [1.0, 0.9, 0.8, 0.79]}),
        ("scaling", "cpu_bound", {"workers": [1, 2], "efficiency": [1.0, 0.7]}),
        ("security", "passed", 37),
        ("disaster_recovery", "search_results_match", False),
        ("disaster_recovery", "in_flight_jobs_completed", 1),
        ("disaster_recovery", "backup_schedule_min", {"timer": 15, "cronjob": 30}),
        ("disaster_recovery", "backup_s", 1200.0),  # longer than the interval: overlapping
        ("determinism", "inputs_billed_for_repeats", 3),
        ("determinism", "retry_inputs_billed", 8),  # re-embedded what was stored
        ("faults", 0, {"phase": "p", "fault": "f", "armed": 2, "served": 1, "happened": False}),
    ]
    for section, key, value in breaks:
        report = passing()
        report[section][key] = value
        if section == "disaster_recovery" and key == "backup_schedule_min":
            report[section]["rpo_bound_s"] = None  # what the drill records when they disagree
        failed = [v.target for v in evaluate(report) if not v.passed]
        assert len(failed) == 1, (section, key, failed)


def test_missing_or_errored_phases_fail() -> None:
    assert not any(v.passed for v in evaluate({}))
    report = passing()
    report["scaling"] = {"error": "TimeoutError", "detail": "8 workers did not become ready"}
    assert [v.passed for v in evaluate(report)].count(False) == 2
    report = passing()
    report["faults"] = []  # no evidence at all is not "every fault happened"
    assert [v.passed for v in evaluate(report)].count(False) == 1
