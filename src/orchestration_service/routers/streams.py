"""Live task status over Server-Sent Events."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from orchestration_service.domain.errors import BadRequest, NotFound
from orchestration_service.domain.events import TASK_STATUS_PREFIX
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.domain.task_tree import node_ids
from orchestration_service.routers.deps import container, visible_projects
from orchestration_service.schemas.common import problem_responses, sse_response
from orchestration_service.schemas.views import task_document
from orchestration_service.services.event_log import LogEntry, LogFilter
from orchestration_service.sse import SSEResponse, sse_comment, sse_message

router = APIRouter(tags=["tasks"])
_FINAL = {s.value for s in FINAL_STATES}


@router.get(
    "/tasks/{task_id}/stream",
    summary="Live status of a task and its subtasks (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        **sse_response(
            "`snapshot` (a task document), then `status` and `progress` events",
            ["snapshot", "status", "progress"],
        ),
        **problem_responses(400, 404, 503),
    },
)
async def task_stream(
    request: Request,
    task_id: str,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """``snapshot`` (the task document) first, then a ``status`` event per transition of the
    task or its subtasks, and a ``progress`` event when the task's worker reports progress
    (``task.progress``; read for all of the process's streams at once, every
    ``events.sse_progress_seconds``); closes once the task is final. Resumable with Last-Event-ID."""
    c = container(request)
    try:
        tid = uuid.UUID(task_id)
    except ValueError:
        raise NotFound(f"task {task_id} does not exist") from None
    scope = visible_projects(request)
    resume: int | None = None
    if last_event_id:
        try:
            resume = max(0, int(last_event_id))
        except ValueError:
            raise BadRequest("Last-Event-ID must be an event sequence number") from None
    view = await c.tasks.get(tid, project_ids=scope)  # 404 before the stream starts
    family = {str(tid), *(str(s["id"]) for s in view.subtasks)}
    if view.subtasks:  # a nested tree: its deeper subtasks' transitions show too
        family.update(node_ids(await c.tasks.tree(tid, project_ids=scope)))

    def in_family(e: LogEntry) -> bool:
        data = e.envelope.get("data") or {}
        if e.subject in family:
            return True
        if data.get("parent_id") in family:  # a new descendant joins the family
            family.add(str(data.get("task_id")))
            return True
        return False

    flt = LogFilter(types=[TASK_STATUS_PREFIX + "*"], predicate=in_family)
    slot = c.notifier.open_stream()  # 503 with Retry-After when the process has none free

    async def _status_payload(entry: LogEntry) -> dict[str, Any]:
        data = entry.envelope.get("data") or {}
        doc = await c.tasks.get(uuid.UUID(str(data["task_id"])), project_ids=scope)
        return {
            "task_id": data["task_id"],
            "from": data.get("from"),
            "to": data.get("to"),
            "reason": data.get("reason"),
            "time": data.get("time"),
            "task": task_document(doc.task, doc.subtasks, doc.dependencies),
        }

    async def stream() -> AsyncIterator[bytes]:
        head = resume if resume is not None else await c.event_log.head()
        current = await c.tasks.get(tid, project_ids=scope)
        yield sse_message(
            head, "snapshot", task_document(current.task, current.subtasks, current.dependencies)
        )
        if TaskStatus(current.task["status"]) in FINAL_STATES:
            # Nothing more will happen: replay what the client missed (if resuming), then close.
            position = head
            while resume is not None and (batch := await c.event_log.read(position, 500)):
                for missed in batch:
                    if flt.matches(missed):
                        yield sse_message(missed.seq, "status", await _status_payload(missed))
                position = batch[-1].seq
            return
        # Events are numbered after they commit: a transition the snapshot already shows may
        # still get a number after ``head``. Its time tells: it is not sent again.
        shown_until = current.task["updated_at"]
        heartbeat = c.settings.events.sse_heartbeat_seconds
        progress = _ProgressWatch(current.task.get("progress"), heartbeat)
        last_seq = head  # progress events carry the position reached: a resume misses nothing
        # The process's board reads the progress of every followed task in one statement per
        # interval; this stream only looks at it.
        with c.progress_board.watch(tid, current.task.get("progress")):
            async for arrived in c.event_log.follow(
                head, flt, heartbeat=min(heartbeat, c.settings.events.sse_progress_seconds), cut=slot.cut
            ):
                if (news := progress.news(c.progress_board.latest(tid))) is not None:
                    yield sse_message(last_seq, "progress", {"task_id": str(tid), "progress": news})
                if arrived is None:
                    if progress.idle_for_heartbeat():
                        yield sse_comment("keepalive")
                    continue
                for entry in arrived:
                    last_seq = entry.seq
                    data = entry.envelope.get("data") or {}
                    if data.get("task_id") == str(tid) and _not_after(data.get("time"), shown_until):
                        continue
                    yield sse_message(entry.seq, "status", await _status_payload(entry))
                    if data.get("task_id") == str(tid) and data.get("to") in _FINAL:
                        return

    return SSEResponse(stream(), slot)


class _ProgressWatch:
    """What progress the client has seen, and when it last heard anything (keepalives are
    sent only when a whole heartbeat passed in silence)."""

    def __init__(self, shown: dict[str, Any] | None, heartbeat: float) -> None:
        self.shown = shown
        self.heartbeat = heartbeat
        self.heard_at = time.monotonic()

    def news(self, latest: dict[str, Any] | None) -> dict[str, Any] | None:
        if latest is None or latest == self.shown:
            return None
        self.shown = latest
        self.heard_at = time.monotonic()
        return latest

    def idle_for_heartbeat(self) -> bool:
        if time.monotonic() - self.heard_at < self.heartbeat:
            return False
        self.heard_at = time.monotonic()
        return True


def _not_after(event_time: Any, moment: datetime) -> bool:
    """Whether a status event's ``time`` is at or before ``moment`` (False if unreadable)."""
    try:
        return datetime.fromisoformat(str(event_time)) <= moment
    except (TypeError, ValueError):
        return False
