"""Document kind from the title at the top of the parsed text; "unknown" when none is found."""

from __future__ import annotations

import pytest

from docingest.pipeline.document_kind import HEAD_CHARS, KINDS, UNKNOWN, classify


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("# Summary of Benefits and Coverage: What this Plan Covers", "sbc"),
        ("2026 Summary of Benefits\nAetna Medicare Advantage PPO", "medicare-sob"),
        ("<!-- page 1 -->\nJanuary 1 – December 31, 2025\n## Evidence of Coverage:", "eoc"),
        ("Glossary of Health Coverage and Medical Terms • This glossary defines", "glossary"),
        ("# Performance Drug List - Standard Control", "formulary"),
        ("Welcome to your Explanation of Benefits statement", "eob"),
        ("Prescription Drug Summary Plan Description 2026", "policy"),
        ("CLAIM FORM - PART A (to be filled in by the insured)", "claim-form"),
        ("Lorem ipsum: nothing that names a kind of document", UNKNOWN),
        ("", UNKNOWN),
    ],
)
def test_the_title_names_the_kind(text: str, kind: str) -> None:
    assert classify(text) == kind


def test_the_earliest_title_wins_over_later_cross_references() -> None:
    glossary = (
        "Glossary of Health Coverage and Medical Terms. See your Summary of Benefits and Coverage"
    )
    assert classify(glossary) == "glossary"
    # at the same place, the longer title: an SBC is not a Medicare "Summary of Benefits"
    assert classify("Summary of Benefits and Coverage") == "sbc"


def test_only_the_opening_is_read() -> None:
    late = "x " * HEAD_CHARS + "Evidence of Coverage"
    assert classify(late) == UNKNOWN
    assert classify("Formulary " + late) == "formulary"


def test_words_must_stand_alone() -> None:
    assert classify("The nonformulary exception process") == UNKNOWN


def test_the_vocabulary_is_closed() -> None:
    assert UNKNOWN in KINDS and all(k == k.lower() for k in KINDS)
