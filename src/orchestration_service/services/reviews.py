"""Human review use cases: open a review when QA asks for one, list and read reviews, and
apply a decision, whoever takes it (this service's API, or another team's review UI through
``review.completed``). One transaction each; every write to a review happens with its task's
row locked, so the review and the task move together."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration_service.db.errors import retry_conflicts
from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.domain.paging import LIST_TOTAL_CAP
from orchestration_service.domain.reviews import ReviewAlreadyDecided, ReviewDecision
from orchestration_service.domain.tasks import TaskRecord
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.reviews import ReviewFilter, ReviewRecord
from orchestration_service.repositories.reviews.port import OPEN
from orchestration_service.schemas.reviews import ReviewCompleted, ReviewRequested
from orchestration_service.services.lifecycle import Lifecycle, emit, payloads, utcnow
from orchestration_service.services.provenance_store import ProvenanceStore

__all__ = ["Decision", "Outcome", "ReviewFilter", "ReviewPage", "ReviewRecord", "ReviewService", "ReviewView"]


@dataclass(frozen=True, slots=True)
class Decision:
    decision: ReviewDecision
    reviewer: str
    text: Any  # the comment (may be None), reason or feedback


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an event did: ``processed`` or ``ignored``, and a sentence why."""

    outcome: str
    detail: str


@dataclass(slots=True)
class ReviewView:
    review: ReviewRecord
    task: TaskRecord


@dataclass(slots=True)
class ReviewPage:
    rows: Sequence[ReviewRecord]
    tasks: dict[uuid.UUID, TaskRecord]
    total: int
    total_capped: bool
    has_more: bool


class ReviewService:
    def __init__(self, storage: Storage, lifecycle: Lifecycle, provenance: ProvenanceStore) -> None:
        self.storage = storage
        self.lifecycle = lifecycle
        self.provenance = provenance

    # -- reads ---------------------------------------------------------------------------
    async def list(
        self,
        f: ReviewFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> ReviewPage:
        """A page, oldest request first, with each review's task."""
        async with self.storage.read() as uow:
            rows = await uow.reviews.find(f, limit=limit + 1, offset=offset, after=after)
            total = await uow.reviews.count(f, cap=LIST_TOTAL_CAP)
            tasks = await uow.tasks.get_many(sorted({r.task_id for r in rows[:limit]}))
        return ReviewPage(
            rows[:limit], dict(tasks), min(total, LIST_TOTAL_CAP), total > LIST_TOTAL_CAP, len(rows) > limit
        )

    async def get(self, review_id: uuid.UUID, *, project_ids: Sequence[str] | None = None) -> ReviewView:
        async with self.storage.read() as uow:
            review = await uow.reviews.get(review_id)
            task = None if review is None else await uow.tasks.get(review.task_id)
        if (
            review is None
            or task is None
            or (project_ids is not None and review.project_id not in project_ids)
        ):
            # Another project's review is answered as a missing one: nothing leaks.
            raise NotFound(f"review {review_id} does not exist")
        return ReviewView(review, task)

    # -- a decision through the API ------------------------------------------------------
    async def decide(
        self, review_id: uuid.UUID, decision: Decision, *, project_ids: Sequence[str] | None = None
    ) -> ReviewView:
        """Apply a person's decision; 404 outside ``project_ids``, 409 once decided."""

        async def once() -> None:
            async with self.storage.transaction() as uow:
                review = await uow.reviews.get(review_id)
                if review is None or (project_ids is not None and review.project_id not in project_ids):
                    raise NotFound(f"review {review_id} does not exist")
                task = await uow.tasks.get(review.task_id, for_update=True)
                # Read again under the task's lock: a concurrent decision has committed or waits.
                review = await uow.reviews.get(review_id)
                if task is None or review is None:
                    raise NotFound(f"review {review_id} does not exist")
                if review.status != OPEN:
                    raise ReviewAlreadyDecided(_already(review))
                await self._apply(uow, task, review, decision, via="api", cause="api:review", publish=True)

        await retry_conflicts(once, what=f"review {review_id}")
        return await self.get(review_id, project_ids=project_ids)

    # -- the consumed events (the caller's transaction; the task is locked) --------------
    async def requested(self, uow: UnitOfWork, task: TaskRecord, p: ReviewRequested, cause: str) -> Outcome:
        status = TaskStatus(task["status"])
        if status != TaskStatus.VALIDATING:
            await self.lifecycle.note(
                uow, task, reason=f"ignored review.requested: the task is {status.value}", cause=cause
            )
            return Outcome("ignored", f"task is {status.value}, not validating")
        now = utcnow()
        review = ReviewRecord(
            id=uuid7(),
            task_id=task["id"],
            project_id=task["project_id"],
            status=OPEN,
            attempt=int(task["attempt"]),
            qa_review_id=p.review_id,
            qa_result_id=p.qa_result_id,
            reason=p.reason,
            request={
                k: v
                for k, v in {"artifacts": p.artifacts, "checklist": p.checklist, "details": p.details}.items()
                if v is not None
            },
            requested_at=now,
        )
        await uow.reviews.insert(review)
        await self.lifecycle.transition(
            uow,
            task,
            TaskStatus.AWAITING_REVIEW,
            reason=f"QA asked for a human review: {p.reason}" if p.reason else "QA asked for a human review",
            cause=cause,
            # A person's time is not the worker's: the attempt's timeout stops here.
            changes={"deadline_at": None},
            details={"review_id": str(review.id), "qa_result_id": p.qa_result_id},
            now=now,
        )
        # The task no longer holds one of its project's slots: the next one may start.
        await self.lifecycle.slot_freed(uow, task["project_id"])
        return Outcome("processed", f"task is awaiting review {review.id}")

    async def completed(
        self, uow: UnitOfWork, task: TaskRecord, p: ReviewCompleted, cause: str, source: str
    ) -> Outcome:
        """Another team's decision. One that comes too late (decided, or the task moved on)
        is recorded in the task's history and ignored."""
        status = TaskStatus(task["status"])
        review = await uow.reviews.open_for_task(task["id"]) if status == TaskStatus.AWAITING_REVIEW else None
        if review is None:
            await self.lifecycle.note(
                uow,
                task,
                reason=f"ignored review.completed: no open review (the task is {status.value})",
                cause=cause,
            )
            return Outcome("ignored", f"no open review; task is {status.value}")
        if p.review_id is not None and p.review_id not in (str(review.id), review.qa_review_id):
            await self.lifecycle.note(
                uow,
                task,
                reason=f"ignored review.completed: it decides review {p.review_id}, not the open {review.id}",
                cause=cause,
            )
            return Outcome("ignored", f"review {p.review_id} is not the task's open review")
        field = p.decision.text_field
        text = getattr(p, field)
        if text is None:  # tolerant: a UI may send its text under another of the three names
            text = p.comment or p.reason or p.feedback
        decision = Decision(p.decision, p.reviewer or source, text)
        # Its sender already published it: this service does not repeat it.
        after = await self._apply(
            uow, task, review, decision, via=cause, cause=cause, publish=False, at=p.decided_at
        )
        return Outcome("processed", f"review {review.id} {p.decision.value}; task is {after['status']}")

    # -- the one code path of a decision -------------------------------------------------
    async def _apply(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        review: ReviewRecord,
        d: Decision,
        *,
        via: str,
        cause: str,
        publish: bool,
        at: datetime | None = None,
    ) -> TaskRecord:
        now = utcnow()
        decided_at = at or now
        text = d.text if d.text is None or isinstance(d.text, str) else str(d.text)
        if not await uow.reviews.decide(
            review.id, decision=d.decision.value, reviewer=d.reviewer, text=text, at=decided_at, via=via
        ):
            raise ReviewAlreadyDecided(f"review {review.id} is already decided")
        events = []
        if publish:
            events.append(
                payloads.review_completed(
                    task,
                    review_id=str(review.id),
                    decision=d.decision.value,
                    text_field=d.decision.text_field,
                    text=d.text,
                    reviewer=d.reviewer,
                    decided_at=decided_at,
                    qa_review_id=review.qa_review_id,
                )
            )
        details = {"review_id": str(review.id), "reviewer": d.reviewer, d.decision.text_field: d.text}
        # A person's decision ends the reviewed attempt for its worker as QA's would (GET /workers).
        outcome = "completed" if d.decision == ReviewDecision.APPROVED else "rejected"
        await uow.workers.set_outcome(task["id"], int(task["attempt"]), outcome, now)
        if d.decision == ReviewDecision.APPROVED:
            return await self._approve(uow, task, review, d, cause=cause, events=events, details=details)
        await emit(uow, events)
        if d.decision == ReviewDecision.REJECTED:
            return await self.lifecycle.fail(
                uow,
                task,
                reason=f"rejected in review by {d.reviewer}: {d.text}",
                cause=cause,
                error=details,
                publish=True,
            )
        return await self.lifecycle.retry_or_fail(
            uow,
            task,
            reason=f"changes requested in review by {d.reviewer}",
            cause=cause,
            error=details,
            feedback=d.text,
        )

    async def _approve(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        review: ReviewRecord,
        d: Decision,
        *,
        cause: str,
        events: Sequence[Any],
        details: dict[str, Any],
    ) -> TaskRecord:
        now = utcnow()
        verification = {
            "qa_profile": "human",
            "qa_result_id": review.qa_result_id,
            # The provenance record names the person who verified the output.
            "verified_by": d.reviewer,
            "details": {
                "review_id": str(review.id),
                "reviewer": d.reviewer,
                "decision": d.decision.value,
                "comment": d.text,
                "qa_reason": review.reason,
            },
        }
        record_id = await self.provenance.record_completion(uow, task, verification)
        metrics = task.get("metrics") or {}
        started = task.get("started_at") or task["created_at"]
        exec_ms = metrics.get("execution_time_ms") or int((now - started).total_seconds() * 1000)
        artifacts = task.get("artifacts") or []
        done = await self.lifecycle.transition(
            uow,
            task,
            TaskStatus.COMPLETED,
            reason=f"approved in review by {d.reviewer}",
            cause=cause,
            changes={"provenance_id": record_id, "execution_time_ms": exec_ms, "artifacts": artifacts},
            details=details,
            events=[*events, payloads.completed(task, str(record_id), artifacts)],
            now=now,
        )
        await self.lifecycle.after_final(uow, done)
        return done


def _already(review: ReviewRecord) -> str:
    if review.status == OPEN:
        return f"review {review.id} is open"
    if review.decision:
        return f"review {review.id} was already decided: {review.decision} by {review.reviewer}"
    return f"review {review.id} was closed without a decision: {review.closed_reason}"
