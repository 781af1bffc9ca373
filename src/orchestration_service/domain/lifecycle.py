"""The task state machine: every allowed transition, each a small named rule.

A newcomer looking for "can a task go from X to Y?" reads this file and nothing else.
Services call :func:`check_transition`; it returns the rule that allows the move or
raises :class:`IllegalTransition` (an HTTP 409 at the edge).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"  # accepted; waiting for routing or for a concurrency slot
    DECOMPOSING = "decomposing"  # split into subtasks; waits for its children
    RUNNING = "running"  # dispatched to a worker tier (task.ready published)
    VALIDATING = "validating"  # the worker's output is under QA
    AWAITING_REVIEW = "awaiting_review"  # QA asked a person to decide (a review is open)
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Dispatch order: higher goes first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}

FINAL_STATES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)
# "In flight" is what the per-project concurrency limit counts, and what the task timeout
# sweeps. A task awaiting review is neither: no worker holds it, and a person's time to decide
# must not time it out nor hold up the project's other work.
IN_FLIGHT_STATES: frozenset[TaskStatus] = frozenset({TaskStatus.RUNNING, TaskStatus.VALIDATING})
ACTIVE_STATES: frozenset[TaskStatus] = frozenset(TaskStatus) - FINAL_STATES


@dataclass(frozen=True, slots=True)
class TransitionRule:
    name: str
    from_states: frozenset[TaskStatus]
    to_state: TaskStatus
    description: str

    def allows(self, current: TaskStatus, target: TaskStatus) -> bool:
        return current in self.from_states and target == self.to_state


def _rule(name: str, from_states: set[TaskStatus], to: TaskStatus, description: str) -> TransitionRule:
    return TransitionRule(name, frozenset(from_states), to, description)


S = TaskStatus
RULES: tuple[TransitionRule, ...] = (
    _rule("dispatch", {S.PENDING}, S.RUNNING, "a routed task gets a slot and goes to a worker tier"),
    _rule("decompose", {S.PENDING}, S.DECOMPOSING, "the plan was accepted; children will do the work"),
    _rule("receive_output", {S.RUNNING}, S.VALIDATING, "a worker produced output; QA takes over"),
    # A validation may overtake the output event when QA and worker publish on different
    # exchanges; accepting it from `running` loses nothing (artifacts come with it).
    _rule("accept_validation", {S.RUNNING, S.VALIDATING}, S.COMPLETED, "QA accepted the output"),
    _rule(
        "retry",
        {S.RUNNING, S.VALIDATING},
        S.RUNNING,
        "QA rejected it, a worker failed or it timed out, and attempts remain",
    ),
    _rule("request_review", {S.VALIDATING}, S.AWAITING_REVIEW, "QA asked a person to review the output"),
    _rule("approve_review", {S.AWAITING_REVIEW}, S.COMPLETED, "a reviewer approved the output"),
    _rule(
        "request_changes",
        {S.AWAITING_REVIEW},
        S.RUNNING,
        "a reviewer asked for changes; a new attempt starts with the feedback",
    ),
    _rule("complete_parent", {S.DECOMPOSING}, S.COMPLETED, "every subtask completed"),
    _rule(
        "fail",
        {S.PENDING, S.DECOMPOSING, S.RUNNING, S.VALIDATING, S.AWAITING_REVIEW},
        S.FAILED,
        "retries exhausted, timeout, worker error, a subtask failed for good, or a reviewer rejected it",
    ),
    # Retry by hand: a person asked for another try, so max_attempts does not stop it.
    _rule(
        "retry_by_hand",
        {S.FAILED, S.CANCELLED},
        S.PENDING,
        "someone asked to run a failed or cancelled task again (routed and dispatched anew)",
    ),
    _rule(
        "retry_subtasks",
        {S.FAILED, S.CANCELLED},
        S.DECOMPOSING,
        "someone retried a decomposed task: its failed and cancelled subtasks run again",
    ),
    _rule(
        "cancel",
        {S.PENDING, S.DECOMPOSING, S.RUNNING, S.VALIDATING, S.AWAITING_REVIEW},
        S.CANCELLED,
        "someone cancelled it (or its parent, or a rollback)",
    ),
)
del S


class IllegalTransition(Exception):
    def __init__(self, current: TaskStatus, target: TaskStatus) -> None:
        self.current = current
        self.target = target
        if current in FINAL_STATES:
            detail = f"the task is already {current.value}"
        else:
            detail = f"a {current.value} task cannot become {target.value}"
        super().__init__(detail)


def check_transition(current: TaskStatus, target: TaskStatus) -> TransitionRule:
    """The rule that allows ``current -> target``; raises IllegalTransition otherwise."""
    for rule in RULES:
        if rule.allows(current, target):
            return rule
    raise IllegalTransition(current, target)


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    return any(rule.allows(current, target) for rule in RULES)


def is_final(status: TaskStatus) -> bool:
    return status in FINAL_STATES


# Retry by hand: which tasks a person may retry, and what a retry does to a task's tree.
RETRYABLE_BY_HAND: frozenset[TaskStatus] = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})


def retried_state(*, decomposed: bool) -> TaskStatus:
    """Where a retried task goes: a decomposed one waits for its subtasks again (only those
    that failed or were cancelled run again); any other is routed and dispatched anew."""
    return TaskStatus.DECOMPOSING if decomposed else TaskStatus.PENDING


def reruns_on_retry(status: TaskStatus) -> bool:
    """Whether a descendant of a retried task runs again: completed work is kept."""
    return status in RETRYABLE_BY_HAND


def takes_progress(status: TaskStatus) -> bool:
    """Whether a task.progress report applies: only a running attempt reports progress
    (the others, final ones included, are ignored)."""
    return status == TaskStatus.RUNNING
