"""Handlers of consumed events: one code path for the broker consumer and the HTTP ingress.

Each event is applied in one transaction that also claims its CloudEvent id, within its
project (its task's, or its rollback's), in ``processed_events``; a duplicate changes
nothing, a rejected event stores nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError

from orchestration_service import tracing
from orchestration_service.db.errors import is_transient, retry_conflicts
from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import EventRejected
from orchestration_service.domain.ids import parse_uuid
from orchestration_service.domain.json_text import nul_path
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.domain.tasks import with_values
from orchestration_service.events.bus import Disposition, HandlerResult, InboundMessage
from orchestration_service.logs import event_id_var
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.tasks import TaskRecord
from orchestration_service.schemas.events import (
    CloudEvent,
    RollbackRequested,
    TaskFailed,
    TaskOutputCreated,
    TaskProgress,
    TaskRejected,
    TaskValidated,
)
from orchestration_service.schemas.reviews import ReviewCompleted, ReviewRequested
from orchestration_service.services.fleet import FleetService
from orchestration_service.services.lifecycle import Lifecycle, payloads, utcnow
from orchestration_service.services.progress import ProgressRecorder
from orchestration_service.services.provenance_store import ProvenanceStore
from orchestration_service.services.reviews import ReviewService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Processed:
    outcome: str  # processed | duplicate | ignored
    detail: str


SCHEMAS: dict[str, type[BaseModel]] = {
    ev.TASK_OUTPUT_CREATED: TaskOutputCreated,
    ev.TASK_VALIDATED: TaskValidated,
    ev.TASK_REJECTED: TaskRejected,
    ev.TASK_FAILED: TaskFailed,
    ev.ROLLBACK_REQUESTED: RollbackRequested,
    ev.REVIEW_REQUESTED: ReviewRequested,
    ev.REVIEW_COMPLETED: ReviewCompleted,
    ev.TASK_PROGRESS: TaskProgress,
}


def _first_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = f"{prefix}.{loc}" if loc else prefix
    return where, f"{where}: {err['msg']}"


def parse_envelope(body: bytes | dict[str, Any]) -> CloudEvent:
    try:
        raw = orjson.loads(body) if isinstance(body, bytes | bytearray) else body
    except orjson.JSONDecodeError as exc:
        raise EventRejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise EventRejected("malformed", "a CloudEvent must be a JSON object")
    where = nul_path(raw, index=".{}")
    if where is not None:
        # PostgreSQL text cannot hold NUL; such an event could never be stored.
        field = None if where == "$" else where
        raise EventRejected("schema", f"{field or 'envelope'}: NUL characters are not allowed", field=field)
    try:
        return CloudEvent.model_validate(raw)
    except ValidationError as exc:
        where, msg = _first_error(exc, "envelope")
        raise EventRejected("malformed", f"not a CloudEvent: {msg}", field=where) from None


def validate_payload(ce: CloudEvent) -> tuple[str, BaseModel]:
    name = ev.event_name_of(ce.type)
    schema = SCHEMAS.get(name)
    if schema is None:
        raise EventRejected(
            "unknown-type", f"event type {ce.type!r} is not one this service consumes", field="type"
        )
    try:
        return name, schema.model_validate(ce.data if ce.data is not None else {})
    except ValidationError as exc:
        where, msg = _first_error(exc, "data")
        raise EventRejected("schema", f"{name}: {msg}", field=where) from None


RollbackApplier = Callable[[UnitOfWork, RollbackRequested, CloudEvent], Awaitable[str]]
# Raises EventRejected (as for an unknown record) when the rollback reaches outside ``projects``;
# returns the rollback as resolved within them (an artifact id names its record there).
RollbackScopeCheck = Callable[[UnitOfWork, RollbackRequested, Collection[str]], Awaitable[RollbackRequested]]
# The project a rollback is de-duplicated in; raises EventRejected for an unknown record.
RollbackProject = Callable[[UnitOfWork, RollbackRequested], Awaitable[str]]
# Stores a dead letter: (source "broker" | "ingress", the event as received, kind, reason,
# the sender's projects or None); never raises.
DeadLetterSink = Callable[
    [str, "bytes | dict[str, Any]", str, str, "Collection[str] | None"], Awaitable[object]
]


class EventProcessor:
    def __init__(
        self,
        storage: Storage,
        lifecycle: Lifecycle,
        provenance: ProvenanceStore,
        *,
        retry_on_worker_failure: bool,
        on_outcome: Callable[[str, str], None] = lambda _name, _outcome: None,
    ) -> None:
        self.storage = storage
        self.lifecycle = lifecycle
        self.provenance = provenance
        self.retry_on_worker_failure = retry_on_worker_failure
        self.on_outcome = on_outcome  # metrics hook: (event name, outcome)
        self.rollback: RollbackApplier | None = None  # set by the provenance service
        self.rollback_scope: RollbackScopeCheck | None = None  # likewise
        self.rollback_project: RollbackProject | None = None  # likewise
        self.reviews: ReviewService | None = None  # set by the container
        self.fleet: FleetService | None = None  # records workers (GET /workers); set by the container
        self.on_dead_letter: DeadLetterSink | None = None  # stores dead letters; likewise
        self.progress = ProgressRecorder(storage)

    # -- the shared path ---------------------------------------------------------------
    async def process(self, ce: CloudEvent, *, projects: Collection[str] | None = None) -> Processed:
        """Validate and apply one event. Raises EventRejected (nothing stored) or a
        transient database error (nothing stored; try again: ``db.errors.is_transient``).
        A transaction aborted for a deadlock is run again here first.

        ``projects``: the projects the sender may touch (an API key's), None for trusted
        senders (the broker, a key for every project). An event reaching outside them is
        rejected exactly as one naming an unknown task or record, before anything else
        (even the duplicate check) can tell the two apart."""
        name = ev.event_name_of(ce.type)
        parent = (ce.model_extra or {}).get("traceparent")
        with tracing.span(
            f"consume {name}",
            parent_traceparent=parent if isinstance(parent, str) else None,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.message.id": ce.id, "cloudevents.event_type": ce.type},
        ):
            token = event_id_var.set(ce.id)
            try:
                return await retry_conflicts(lambda: self._process(name, ce, projects), what=f"event {ce.id}")
            finally:
                event_id_var.reset(token)

    async def _process(self, name: str, ce: CloudEvent, projects: Collection[str] | None) -> Processed:
        if ce.source == ev.SOURCE:
            # Our own task.failed coming back from the exchange: already applied.
            self.on_outcome(name, "ignored")
            return Processed("ignored", "event published by this service")
        name, payload = validate_payload(ce)
        if isinstance(payload, TaskProgress):
            # A heartbeat: no claim, no history, one UPDATE (services/progress.py says why).
            outcome, detail = await self.progress.record(payload, at=ce.time, projects=projects)
            if outcome == "processed" and payload.worker_id and self.fleet is not None:
                # Debounced: nearly always a dictionary look-up, not a write.
                await self.fleet.progress_reported(
                    [(uuid.UUID(payload.task_id), payload.attempt, payload.worker_id)]
                )
            self.on_outcome(name, outcome)
            return Processed(outcome, detail)
        is_rollback = isinstance(payload, RollbackRequested)
        task_id = None if is_rollback else parse_uuid(str(getattr(payload, "task_id", "")))
        async with self.storage.transaction() as uow:
            # The idempotency key is (project, id): the project is resolved, and the sender's
            # scope checked, before the claim, so nothing of another project decides the answer.
            task: TaskRecord | None = None
            if isinstance(payload, RollbackRequested):
                if self.rollback is None or self.rollback_scope is None or self.rollback_project is None:
                    raise EventRejected("unknown-type", "rollback handling is not available")
                if projects is not None:
                    payload = await self.rollback_scope(uow, payload, projects)
                project = await self.rollback_project(uow, payload)
                claimed = await uow.processed_events.claim(project, ce.id, name, ce.source, "processed")
            else:
                claimed = False
                if task_id is not None:
                    got = await uow.tasks.claim_event_and_lock(
                        event_id=ce.id,
                        event_type=name,
                        source=ce.source,
                        outcome="processed",
                        task_id=task_id,
                    )
                    claimed, task = got.claimed, got.task
                if task is None or (projects is not None and task["project_id"] not in projects):
                    text = str(getattr(payload, "task_id", ""))
                    raise EventRejected("unknown-task", f"task {text} does not exist", field="data.task_id")
                project = task["project_id"]
            if not claimed:
                result = Processed("duplicate", f"event {ce.id} was already processed")
            else:
                result = await self._apply(uow, name, payload, ce, task)
                if result.outcome != "processed":
                    await uow.processed_events.set_outcome(project, ce.id, result.outcome)
        self.on_outcome(name, result.outcome)
        return result

    async def _apply(
        self,
        uow: UnitOfWork,
        name: str,
        payload: BaseModel,
        ce: CloudEvent,
        locked: TaskRecord | None,
    ) -> Processed:
        """Apply a claimed event; ``locked``: its task, already read and locked (None for a
        rollback)."""
        if isinstance(payload, RollbackRequested):
            assert self.rollback is not None
            detail = await self.rollback(uow, payload, ce)
            return Processed("processed", detail)
        assert locked is not None
        task = with_values(locked, {})  # a copy: the handlers fill in what the event brings
        cause = f"event:{name}:{ce.id}"[:255]
        status = TaskStatus(task["status"])
        if status in FINAL_STATES:
            await self.lifecycle.note(
                uow, task, reason=f"ignored {name}: the task is already {status.value}", cause=cause
            )
            result = Processed("ignored", f"task is already {status.value}")
        elif isinstance(payload, ReviewRequested | ReviewCompleted):
            return await self._review(uow, task, payload, ce, cause)
        else:
            handler = {
                ev.TASK_OUTPUT_CREATED: self._output_created,
                ev.TASK_VALIDATED: self._validated,
                ev.TASK_REJECTED: self._rejected,
                ev.TASK_FAILED: self._failed,
            }[name]
            result = await handler(uow, task, payload, cause)
        if self.fleet is not None:
            await self._record_worker(self.fleet, uow, name, locked, payload, result.outcome)
        return result

    @staticmethod
    async def _record_worker(
        fleet: FleetService, uow: UnitOfWork, name: str, task: TaskRecord, payload: Any, outcome: str
    ) -> None:
        """Who worked on the task's attempt and how it ended (GET /workers), in this
        transaction; ``task`` as it was before the event (its attempt)."""
        worker = getattr(payload, "worker_id", None)
        applied = outcome == "processed"
        if worker:
            failed = applied and name == ev.TASK_FAILED
            model = getattr(payload, "model_used", None)
            await fleet.worker_seen(uow, task, worker, model=model, outcome="failed" if failed else None)
        elif applied and name in _ATTEMPT_OUTCOMES:
            await fleet.attempt_finished(uow, task, _ATTEMPT_OUTCOMES[name])

    # -- one per event -----------------------------------------------------------------
    async def _output_created(self, uow: UnitOfWork, task: TaskRecord, p: Any, cause: str) -> Processed:
        assert isinstance(p, TaskOutputCreated)
        if TaskStatus(task["status"]) != TaskStatus.RUNNING:
            await self.lifecycle.note(
                uow, task, reason=f"ignored task.output.created: the task is {task['status']}", cause=cause
            )
            return Processed("ignored", f"task is {task['status']}, not running")
        artifacts = [a.model_dump(exclude_none=True) for a in p.artifacts]
        metrics = {
            k: v
            for k, v in {
                "worker_id": p.worker_id,
                "model_used": p.model_used,
                "tokens_input": p.tokens_input,
                "tokens_output": p.tokens_output,
                "execution_time_ms": p.execution_time_ms,
                "started_at": p.started_at.isoformat() if p.started_at else None,
                "completed_at": p.completed_at.isoformat() if p.completed_at else None,
                "inputs": [i.model_dump(exclude_none=True) for i in p.inputs] if p.inputs else None,
                "prompt_template": p.prompt_template,
                "parameters": p.parameters,
            }.items()
            if v is not None
        }
        await self.lifecycle.transition(
            uow,
            task,
            TaskStatus.VALIDATING,
            reason="output received; awaiting QA",
            cause=cause,
            changes={"artifacts": artifacts, "output": _as_object(p.output), "metrics": metrics},
            details={"worker_id": p.worker_id, "artifacts": len(artifacts)},
        )
        return Processed("processed", "task is validating")

    async def _validated(self, uow: UnitOfWork, task: TaskRecord, p: Any, cause: str) -> Processed:
        assert isinstance(p, TaskValidated)
        if TaskStatus(task["status"]) not in (TaskStatus.RUNNING, TaskStatus.VALIDATING):
            await self.lifecycle.note(
                uow, task, reason=f"ignored task.validated: the task is {task['status']}", cause=cause
            )
            return Processed("ignored", f"task is {task['status']}")
        if p.artifacts:
            task["artifacts"] = [a.model_dump(exclude_none=True) for a in p.artifacts]
        now = utcnow()
        record_id = await self.provenance.record_completion(
            uow, task, p.model_dump(mode="json", exclude_none=True)
        )
        metrics = task.get("metrics") or {}
        started = task.get("started_at") or task["created_at"]
        exec_ms = metrics.get("execution_time_ms") or int((now - started).total_seconds() * 1000)
        artifacts = task.get("artifacts") or []
        done = await self.lifecycle.transition(
            uow,
            task,
            TaskStatus.COMPLETED,
            reason="validated by QA",
            cause=cause,
            changes={"provenance_id": record_id, "execution_time_ms": exec_ms, "artifacts": artifacts},
            details={"confidence": p.confidence, "qa_result_id": p.qa_result_id},
            events=[payloads.completed(task, str(record_id), artifacts)],
            now=now,
        )
        await self.lifecycle.after_final(uow, done)
        return Processed("processed", "task completed")

    async def _rejected(self, uow: UnitOfWork, task: TaskRecord, p: Any, cause: str) -> Processed:
        assert isinstance(p, TaskRejected)
        if TaskStatus(task["status"]) not in (TaskStatus.RUNNING, TaskStatus.VALIDATING):
            await self.lifecycle.note(
                uow, task, reason=f"ignored task.rejected: the task is {task['status']}", cause=cause
            )
            return Processed("ignored", f"task is {task['status']}")
        reason = p.reason or "rejected by QA"
        after = await self.lifecycle.retry_or_fail(
            uow,
            task,
            reason=f"rejected: {reason}",
            cause=cause,
            error=p.feedback or reason,
            feedback=p.feedback,
        )
        return Processed("processed", f"task is {after['status']} (attempt {after['attempt']})")

    async def _failed(self, uow: UnitOfWork, task: TaskRecord, p: Any, cause: str) -> Processed:
        assert isinstance(p, TaskFailed)
        retry = bool(self.retry_on_worker_failure and p.retryable)
        in_flight = TaskStatus(task["status"]) in (TaskStatus.RUNNING, TaskStatus.VALIDATING)
        error = p.error or "worker reported failure"
        if in_flight:
            after = await self.lifecycle.retry_or_fail(
                uow,
                task,
                reason="worker failed",
                cause=cause,
                error=error,
                retry=retry,
                publish_failure=False,
            )
        else:
            after = await self.lifecycle.fail(
                uow, task, reason="failed", cause=cause, error=error, publish=False
            )
        return Processed("processed", f"task is {after['status']}")

    async def _review(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        p: ReviewRequested | ReviewCompleted,
        ce: CloudEvent,
        cause: str,
    ) -> Processed:
        if self.reviews is None:
            raise EventRejected("unknown-type", "review handling is not available")
        if isinstance(p, ReviewRequested):
            done = await self.reviews.requested(uow, task, p, cause)
        else:
            done = await self.reviews.completed(uow, task, p, cause, ce.source)
        return Processed(done.outcome, done.detail)

    # -- the broker adapter ------------------------------------------------------------
    async def handle_message(self, msg: InboundMessage) -> HandlerResult:
        """Map a broker delivery to ack / dead-letter / retry."""
        name = msg.routing_key
        try:
            ce = parse_envelope(msg.body)
            name = ev.event_name_of(ce.type)
            result = await self.process(ce)
        except EventRejected as exc:
            log.warning(
                "event dead-lettered",
                extra={"event_type": name, "reason": exc.reason, "kind": exc.kind},
            )
            self.on_outcome(name, "dead_lettered")
            await self._store_dead_letter(msg.body, exc.kind, exc.reason)
            return HandlerResult(Disposition.DEAD_LETTER, "dead_lettered", f"{exc.kind}: {exc.reason}")
        except Exception as exc:
            if not is_transient(exc):
                await self._store_dead_letter(msg.body, "crash", f"handler crashed: {type(exc).__name__}")
                raise  # a bug: the bus adapter logs it and dead-letters the message
            log.warning("event handling failed transiently; will retry: %s: %s", type(exc).__name__, exc)
            return HandlerResult(Disposition.RETRY, "retry", str(exc))
        return HandlerResult(Disposition.ACK, result.outcome, result.detail)

    async def _store_dead_letter(self, body: bytes, kind: str, reason: str) -> None:
        if self.on_dead_letter is not None:
            await self.on_dead_letter("broker", body, kind, reason, None)


_ATTEMPT_OUTCOMES = {ev.TASK_VALIDATED: "completed", ev.TASK_REJECTED: "rejected", ev.TASK_FAILED: "failed"}


def _as_object(output: Any) -> Any:
    if output is None or isinstance(output, dict):
        return output
    return {"content": output}
