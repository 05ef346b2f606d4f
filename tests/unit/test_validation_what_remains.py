"""What holds the I/O-bound scaling point: the gap between the first point's seconds and the
judged point's is split over the parts of the document that completed last, and the report
says it in words, from those numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docingest.ops.validation import report
from docingest.ops.validation.scaling import what_remains


def series() -> dict[str, Any]:
    return {
        "workers": [1, 2, 4, 8],
        "docs_per_min": [166.67, 315.79, 600.0, 1066.67],
        "seconds": [3.6, 3.8, 4.0, 4.5],
        "stack_cpu_ms_per_doc": [84.0, 80.0, 71.3, 90.0],
        "cpu_cap": [1400.0, 1450.0, 1600.0, 1300.0],
        "uploads_s": [0.08, 0.15, 0.3, 0.66],
        "last_document": [
            {"created_s": 0.04, "parser_s": 2.8, "embedder_s": 0.6, "ours_s": 0.16},
            {"created_s": 0.1, "parser_s": 2.9, "embedder_s": 0.6, "ours_s": 0.2},
            {"created_s": 0.2, "parser_s": 2.9, "embedder_s": 0.7, "ours_s": 0.2},
            {"created_s": 0.6, "parser_s": 2.9, "embedder_s": 0.7, "ours_s": 0.3},
        ],
    }


def test_the_gap_is_split_over_the_last_documents_parts_and_adds_up() -> None:
    remains = what_remains(series())
    gap = remains["gap_by_part_s"]
    assert gap == pytest.approx(
        {"created_s": 0.56, "parser_s": 0.1, "embedder_s": 0.1, "ours_s": 0.14}
    )
    assert remains["gap_s"] == pytest.approx(0.9) == pytest.approx(sum(gap.values()))
    assert remains["seconds"] == [3.6, 4.5] and remains["uploads_s"] == [0.08, 0.66]
    # had only the providers' draws differed: 3.6 / (3.6 + 0.1 + 0.1)
    assert remains["efficiency_if_only_providers_differed"] == pytest.approx(0.947, abs=1e-3)


def test_linear_scaling_is_set_against_what_the_cores_allowed_at_the_judged_point() -> None:
    remains = what_remains(series())
    assert remains["stack_cpu_ms_per_doc"] == [84.0, 90.0]
    assert remains["linear_docs_per_min"] == pytest.approx(8 * 166.67)  # eight times one worker
    assert remains["cpu_cap_docs_per_min"] == 1300.0  # the judged point's, not the first's
    assert remains["linear_share_of_cpu_cap"] == pytest.approx(1333.36 / 1300, abs=1e-3)


def test_the_report_says_what_remains_from_the_run(tmp_path: Path) -> None:
    io_bound = {**series(), "what_remains": what_remains(series())}
    report.write(tmp_path, {"meta": {}, "scaling": {"io_bound": io_bound}}, [])
    text = (tmp_path / "report.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("What holds the I/O-bound point"))
    assert "at 8 workers the run took 4.5 s against 3.6 s at 1" in line
    assert "its creation +0.56 s (all uploads took 0.66 s against 0.08 s)" in line
    assert "its parser +0.1 s" in line and "docingest's own time on it +0.14 s" in line
    assert "efficiency would be 0.947" in line
    assert "CPU per document was 84.0 ms at 1 and 90.0 ms at 8 workers" in line
    assert "allowed 1300.0 docs/min, and linear scaling asks for 1333.36: 103% of it" in line
