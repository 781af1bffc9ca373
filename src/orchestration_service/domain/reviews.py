"""Human review: the decisions a reviewer can take, and what each needs.

QA's ``review.requested`` puts a ``validating`` task in ``awaiting_review`` and opens a
review; one decision closes it (the task's moves are rules in ``domain.lifecycle``)."""

from __future__ import annotations

from enum import StrEnum

from orchestration_service.domain.errors import Conflict


class ReviewDecision(StrEnum):
    APPROVED = "approved"  # the task completes; its provenance names the reviewer
    REJECTED = "rejected"  # the task fails
    CHANGES_REQUESTED = "changes_requested"  # a new attempt, with the feedback

    @property
    def text_field(self) -> str:
        """The field of the decision's text in requests and in ``review.completed``."""
        return _TEXT_FIELD[self]


_TEXT_FIELD = {
    ReviewDecision.APPROVED: "comment",
    ReviewDecision.REJECTED: "reason",
    ReviewDecision.CHANGES_REQUESTED: "feedback",
}

ANONYMOUS = "anonymous"  # the reviewer when auth is off


class ReviewAlreadyDecided(Conflict):
    kind, title = "review-already-decided", "The review is already decided"
