"""Heartbeats from the broker, handled in batches.

The RabbitMQ adapter hands over the ``task.progress`` deliveries that arrived together
(``<queue>.heartbeats``). Each is parsed and validated exactly as one event is
(``parse_envelope``, ``validate_payload``); the valid reports are written together
(``ProgressRecorder.record_many``: the latest of each task and attempt, one statement or
transaction), under one tracing span, and the workers they name are recorded (debounced,
``FleetService.progress_reported``). Anything else (malformed, another type, our own) takes the
one-event path, ``EventProcessor.handle_message``, so its dead-lettering and logs are the same.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from opentelemetry.trace import SpanKind

from orchestration_service import tracing
from orchestration_service.db.errors import is_transient, retry_conflicts
from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import EventRejected
from orchestration_service.events.bus import Disposition, HandlerResult, InboundMessage
from orchestration_service.events.handlers import EventProcessor, parse_envelope, validate_payload
from orchestration_service.schemas.events import TaskProgress
from orchestration_service.services.progress import Outcome

log = logging.getLogger(__name__)

ACKED = HandlerResult(Disposition.ACK, "processed", "progress kept")


class HeartbeatBatches:
    """A ``BatchHandler``: one result per message, in order."""

    def __init__(self, processor: EventProcessor) -> None:
        self.processor = processor

    async def __call__(self, messages: Sequence[InboundMessage]) -> list[HandlerResult]:
        results: list[HandlerResult | None] = [None] * len(messages)
        reports: list[tuple[int, TaskProgress, datetime | None]] = []
        for i, msg in enumerate(messages):
            payload = _report_of(msg.body)
            if payload is None:
                results[i] = await self._one(msg)
            else:
                reports.append((i, *payload))
        if reports:
            for (i, _p, _at), result in zip(reports, await self._record(messages, reports), strict=True):
                results[i] = result
        return [r if r is not None else ACKED for r in results]

    async def _one(self, msg: InboundMessage) -> HandlerResult:
        try:
            return await self.processor.handle_message(msg)
        except Exception as exc:  # as the adapter does for one delivery: a bug dead-letters it
            log.exception("event handler crashed; message dead-lettered")
            return _crashed(exc)

    async def _record(
        self, messages: Sequence[InboundMessage], reports: Sequence[tuple[int, TaskProgress, datetime | None]]
    ) -> list[HandlerResult]:
        processor = self.processor
        name = ev.TASK_PROGRESS
        with tracing.span(
            f"consume {name}",
            kind=SpanKind.CONSUMER,
            attributes={"messaging.batch.message_count": len(reports)},
        ):
            try:
                outcomes = await retry_conflicts(
                    lambda: self._apply([(p, at) for _i, p, at in reports]), what="heartbeats"
                )
            except Exception as exc:
                if is_transient(exc):
                    log.warning("heartbeats failed transiently; will retry: %s: %s", type(exc).__name__, exc)
                    return [HandlerResult(Disposition.RETRY, "retry", str(exc))] * len(reports)
                log.exception("heartbeat handling crashed; the batch is dead-lettered")
                for i, _p, _at in reports:
                    await self._dead_letter(
                        messages[i].body, "crash", f"handler crashed: {type(exc).__name__}"
                    )
                return [_crashed(exc)] * len(reports)
        out: list[HandlerResult] = []
        for (i, _p, _at), outcome in zip(reports, outcomes, strict=True):
            if isinstance(outcome, EventRejected):
                log.warning(
                    "event dead-lettered",
                    extra={"event_type": name, "reason": outcome.reason, "kind": outcome.kind},
                )
                processor.on_outcome(name, "dead_lettered")
                await self._dead_letter(messages[i].body, outcome.kind, outcome.reason)
                out.append(
                    HandlerResult(
                        Disposition.DEAD_LETTER, "dead_lettered", f"{outcome.kind}: {outcome.reason}"
                    )
                )
            else:
                processor.on_outcome(name, outcome[0])
                out.append(HandlerResult(Disposition.ACK, *outcome))
        return out

    async def _apply(self, reports: Sequence[tuple[TaskProgress, datetime | None]]) -> list[Outcome]:
        outcomes = await self.processor.progress.record_many(reports)
        fleet = self.processor.fleet
        if fleet is not None:
            seen = [
                (uuid.UUID(p.task_id), p.attempt, p.worker_id)
                for (p, _at), o in zip(reports, outcomes, strict=True)
                if p.worker_id and not isinstance(o, EventRejected) and o[0] == "processed"
            ]
            if seen:
                await fleet.progress_reported(seen)
        return outcomes

    async def _dead_letter(self, body: bytes, kind: str, reason: str) -> None:
        if self.processor.on_dead_letter is not None:
            await self.processor.on_dead_letter("broker", body, kind, reason, None)


def _report_of(body: bytes) -> tuple[TaskProgress, datetime | None] | None:
    """The report a delivery carries, validated; None for anything else (rejected or not a
    report of another sender), which the one-event path handles."""
    try:
        ce = parse_envelope(body)
        if ce.source == ev.SOURCE or ev.event_name_of(ce.type) != ev.TASK_PROGRESS:
            return None
        _name, payload = validate_payload(ce)
    except EventRejected:
        return None
    assert isinstance(payload, TaskProgress)
    return payload, ce.time


def _crashed(exc: Exception) -> HandlerResult:
    return HandlerResult(
        Disposition.DEAD_LETTER, "dead_lettered", f"handler crashed: {type(exc).__name__}: {exc}"
    )
