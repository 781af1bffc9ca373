"""The state machine: every allowed move, and that everything else is refused."""

from __future__ import annotations

import itertools

import pytest

from orchestration_service.domain.lifecycle import (
    FINAL_STATES,
    IN_FLIGHT_STATES,
    RETRYABLE_BY_HAND,
    RULES,
    IllegalTransition,
    Priority,
    TaskStatus,
    can_transition,
    check_transition,
    reruns_on_retry,
    retried_state,
    takes_progress,
)

S = TaskStatus
ALLOWED = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.DECOMPOSING),
    (S.RUNNING, S.VALIDATING),
    (S.RUNNING, S.COMPLETED),
    (S.VALIDATING, S.COMPLETED),
    (S.RUNNING, S.RUNNING),
    (S.VALIDATING, S.RUNNING),
    (S.DECOMPOSING, S.COMPLETED),
    # Human review: QA asks, a person approves, or asks for changes (a new attempt).
    (S.VALIDATING, S.AWAITING_REVIEW),
    (S.AWAITING_REVIEW, S.COMPLETED),
    (S.AWAITING_REVIEW, S.RUNNING),
    *((s, S.FAILED) for s in (S.PENDING, S.DECOMPOSING, S.RUNNING, S.VALIDATING, S.AWAITING_REVIEW)),
    *((s, S.CANCELLED) for s in (S.PENDING, S.DECOMPOSING, S.RUNNING, S.VALIDATING, S.AWAITING_REVIEW)),
    # Retry by hand: a person runs a failed or cancelled task (or tree) again.
    *((s, t) for s in (S.FAILED, S.CANCELLED) for t in (S.PENDING, S.DECOMPOSING)),
}


def test_a_task_awaiting_review_is_neither_in_flight_nor_final() -> None:
    """No worker holds it: it frees its project's slot and the timeout sweep skips it."""
    assert S.AWAITING_REVIEW not in IN_FLIGHT_STATES
    assert S.AWAITING_REVIEW not in FINAL_STATES


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_exactly_the_documented_transitions_are_allowed(current: TaskStatus, target: TaskStatus) -> None:
    assert can_transition(current, target) == ((current, target) in ALLOWED)
    if (current, target) in ALLOWED:
        assert check_transition(current, target).to_state == target
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_only_a_retry_by_hand_leaves_a_final_state(final: TaskStatus) -> None:
    for target in S:
        by_hand = final in RETRYABLE_BY_HAND and target == retried_state(decomposed=target == S.DECOMPOSING)
        assert can_transition(final, target) == by_hand
    with pytest.raises(IllegalTransition, match=f"already {final.value}"):
        check_transition(final, S.RUNNING)
    assert S.COMPLETED not in RETRYABLE_BY_HAND  # completed work is never redone


def test_a_retry_reruns_failed_and_cancelled_work_only() -> None:
    assert retried_state(decomposed=False) == S.PENDING
    assert retried_state(decomposed=True) == S.DECOMPOSING
    assert {s for s in S if reruns_on_retry(s)} == {S.FAILED, S.CANCELLED}


def test_only_a_running_task_takes_progress() -> None:
    assert {s for s in S if takes_progress(s)} == {S.RUNNING}


def test_rule_names_are_unique_and_described() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert all(r.description for r in RULES)


def test_priorities_dispatch_critical_first() -> None:
    order = sorted(Priority, key=lambda p: p.rank, reverse=True)
    assert order == [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW]
