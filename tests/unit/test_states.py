"""The state machine's legal and illegal transitions, and the retry policy."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docingest.domain.retry import RetryPolicy
from docingest.domain.states import (
    CLAIMABLE,
    FAILED,
    PIPELINE,
    IllegalTransition,
    JobStatus,
    check_transition,
    failure_status,
    is_legal,
    next_status,
    progress_percent,
)


def test_happy_path_is_the_design_order() -> None:
    assert [s.value for s in PIPELINE] == [
        "uploaded", "parse_queued", "parsed", "parse_validated", "chunking", "chunks_stored",
        "embedding_queued", "embedding_in_progress", "embeddings_stored", "complete",
    ]  # fmt: skip
    for src, dst in itertools.pairwise(PIPELINE):
        assert next_status(src) == dst
        check_transition(src, dst)


@pytest.mark.parametrize(
    ("src", "failed"),
    [
        (JobStatus.UPLOADED, JobStatus.FAILED_PARSE),
        (JobStatus.PARSE_QUEUED, JobStatus.FAILED_PARSE),
        (JobStatus.PARSED, JobStatus.FAILED_PARSE),
        (JobStatus.PARSE_VALIDATED, JobStatus.FAILED_CHUNKING),
        (JobStatus.CHUNKING, JobStatus.FAILED_CHUNKING),
        (JobStatus.CHUNKS_STORED, JobStatus.FAILED_EMBEDDING),
        (JobStatus.EMBEDDING_IN_PROGRESS, JobStatus.FAILED_EMBEDDING),
        (JobStatus.EMBEDDINGS_STORED, JobStatus.FAILED_EMBEDDING),
    ],
)
def test_each_stage_fails_into_its_own_failed_status(src: JobStatus, failed: JobStatus) -> None:
    assert failure_status(src) == failed
    check_transition(src, failed)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (JobStatus.UPLOADED, JobStatus.PARSED),  # skipping a stage
        (JobStatus.PARSED, JobStatus.UPLOADED),  # going back
        (JobStatus.CHUNKING, JobStatus.COMPLETE),
        (JobStatus.COMPLETE, JobStatus.UPLOADED),  # complete is final
        (JobStatus.UPLOADED, JobStatus.FAILED_EMBEDDING),  # wrong failure for the stage
        (JobStatus.FAILED_PARSE, JobStatus.CHUNKING),  # retry resumes only where it failed
        (JobStatus.FAILED_PARSE, JobStatus.COMPLETE),
    ],
)
def test_illegal_transitions_are_refused(src: JobStatus, dst: JobStatus) -> None:
    assert not is_legal(src, dst)
    with pytest.raises(IllegalTransition):
        check_transition(src, dst)


def test_terminal_statuses_have_no_next() -> None:
    for status in (JobStatus.COMPLETE, *FAILED):
        with pytest.raises(IllegalTransition):
            next_status(status)
    with pytest.raises(IllegalTransition):
        failure_status(JobStatus.COMPLETE)


def test_retry_leaves_a_failed_status_for_a_stage_of_that_failure() -> None:
    assert is_legal(JobStatus.FAILED_PARSE, JobStatus.PARSE_QUEUED)
    assert is_legal(JobStatus.FAILED_EMBEDDING, JobStatus.EMBEDDING_IN_PROGRESS)
    assert all(s in CLAIMABLE for s in PIPELINE[:-1]) and JobStatus.COMPLETE not in CLAIMABLE


@given(st.sampled_from(list(JobStatus)), st.sampled_from(list(JobStatus)))
def test_legal_transitions_are_exactly_next_failure_or_retry(
    src: JobStatus, dst: JobStatus
) -> None:
    expected = (
        not src.is_terminal and (dst == next_status(src) or dst == failure_status(src))
    ) or (src.is_failed and not dst.is_terminal and failure_status(dst) == src)
    assert is_legal(src, dst) == expected


def test_progress_percent_is_monotone_along_the_pipeline() -> None:
    values = [progress_percent(s, 10, 10, 0) for s in PIPELINE]
    assert values == sorted(values) and values[-1] == 100 and values[0] == 0
    assert progress_percent(JobStatus.EMBEDDING_IN_PROGRESS, 10, 10, 5) == 62


def test_retry_policy_backs_off_exponentially_with_jitter_and_stops() -> None:
    policy = RetryPolicy(max_retries=3, base_s=3.0, cap_s=300.0)
    rng = random.Random(1)
    delays = [policy.decide(n, rng=rng).delay_s for n in range(3)]
    for n, d in enumerate(delays):
        assert 0.75 * 3.0 * 2**n <= d <= 3.0 * 2**n
    assert policy.decide(3).retry is False
    assert policy.decide(0, retry_after=30.0).delay_s == 30.0  # the server's hint wins when longer
    assert RetryPolicy(max_retries=50, cap_s=10.0).decide(20).delay_s <= 10.0
