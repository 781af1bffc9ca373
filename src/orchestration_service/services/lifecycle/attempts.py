"""Starting attempts: a project's waiting tasks dispatched as its limit allows, each with
the artifacts of the tasks it depends on as inputs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.projects import Constitution
from orchestration_service.repositories.tasks.port import TaskRecord
from orchestration_service.services.lifecycle import payloads
from orchestration_service.services.lifecycle.transitions import Step, Transitions, utcnow


class Attempts(Transitions):
    async def slot_freed(self, uow: UnitOfWork, project_id: str) -> None:
        """A task of the project left the running states: its next waiting task may start.

        With a dispatcher, that happens after this commit, batched with other projects' in
        the dispatcher's own transaction: the event that finished the task commits without
        taking the project lock (concurrent completions in one project queued on it). A crash
        in between leaves the task waiting for the sweeper's re-dispatch."""
        notify = self.on_slot_freed
        if notify is None:
            await self.dispatch_project(uow, project_id)
        else:
            uow.after_commit(lambda: notify(project_id))

    async def dispatch_project(self, uow: UnitOfWork, project_id: str) -> list[TaskRecord]:
        return await self.dispatch_projects(uow, [project_id])

    async def dispatch_projects(self, uow: UnitOfWork, project_ids: Sequence[str]) -> list[TaskRecord]:
        """Dispatch as many waiting tasks of each project as its limit allows.

        The project locks make the count-then-dispatch atomic across replicas, so the
        limit holds under races. A few statements whatever the number of projects."""
        if not project_ids:
            return []
        await uow.tasks.lock_projects(project_ids)
        limit = self.settings.task_management.max_concurrent_per_project
        rows = await uow.tasks.dispatchable_within(project_ids, limit)
        if not rows:
            return []
        return await self._start_attempts(uow, rows, reason="dispatched", cause="dispatcher")

    async def _start_attempt(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        *,
        reason: str,
        cause: str,
        feedback: Any = None,
        details: dict[str, Any] | None = None,
    ) -> TaskRecord:
        (started,) = await self._start_attempts(
            uow, [task], reason=reason, cause=cause, feedback=feedback, details=details
        )
        return started

    async def _start_attempts(
        self,
        uow: UnitOfWork,
        tasks: Sequence[TaskRecord],
        *,
        reason: str,
        cause: str,
        feedback: Any = None,
        details: dict[str, Any] | None = None,
    ) -> list[TaskRecord]:
        now = utcnow()
        inputs_of = await self._dependency_inputs(uow, tasks)
        constitutions = await uow.projects.current_constitutions(
            sorted({t["project_id"] for t in tasks if not _override(t)})
        )
        steps: list[Step] = []
        for task in tasks:
            attempt = int(task["attempt"]) + 1
            deadline = now + timedelta(seconds=int(task["timeout_seconds"]))
            tier = task["tier"] or "small"
            inputs = inputs_of.get(task["id"])
            context = dict(task.get("context") or {})
            if inputs:
                context["inputs"] = inputs
            constitution = _constitution(task, constitutions.get(task["project_id"]))
            if constitution is not None:
                # Which text the worker got, kept on the task for its provenance record.
                context["constitution"] = {k: v for k, v in constitution.items() if k != "text"}
            ready = payloads.ready(
                task,
                tier=tier,
                attempt=attempt,
                context=context,
                feedback=feedback,
                deadline=deadline,
                constitution=constitution,
            )
            heartbeat = self._heartbeat_seconds(task)
            changes: dict[str, Any] = {
                "attempt": attempt,
                "dispatched_at": now,
                "deadline_at": deadline,
                "feedback": feedback,
                # A new attempt: the last one's progress no longer says anything.
                "progress": None,
                "progress_at": None,
                "heartbeat_seconds": heartbeat,
                "heartbeat_due_at": now + timedelta(seconds=heartbeat) if heartbeat else None,
            }
            if inputs or constitution is not None:
                # Kept on the task too: its provenance record links the records of these inputs
                # and names the constitution.
                changes["context"] = context
            if task.get("started_at") is None:
                changes["started_at"] = now
            steps.append(
                Step(
                    {**task, "attempt": attempt},
                    TaskStatus.RUNNING,
                    reason=reason,
                    cause=cause,
                    changes=changes,
                    details=details,
                    events=[ready],
                )
            )
        return await self.transition_many(uow, steps, now=now)

    def _heartbeat_seconds(self, task: TaskRecord) -> int | None:
        """The task's heartbeat timeout: its option, else the service's (None: off)."""
        own = (task.get("options") or {}).get("heartbeat_timeout_seconds")
        return int(own) if own else self.settings.task_management.heartbeat_timeout_seconds

    async def _dependency_inputs(
        self, uow: UnitOfWork, tasks: Sequence[TaskRecord]
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """The artifacts of the tasks each one depends on: its consumed inputs."""
        deps = await uow.tasks.dependencies_of([t["id"] for t in tasks])
        if not deps:
            return {}
        producers = await uow.tasks.get_many(sorted({d for ds in deps.values() for d in ds}))
        out: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for task_id, dep_ids in deps.items():
            inputs = out.setdefault(task_id, [])
            for dep_id in dep_ids:
                dep = producers.get(dep_id)
                if dep is None:
                    continue
                for art in dep["artifacts"] or []:
                    inputs.append(
                        {
                            "artifact_id": art.get("id"),
                            "task_id": str(dep_id),
                            "provenance_id": str(dep["provenance_id"]) if dep["provenance_id"] else None,
                            "relationship": "consumed",
                            "type": art.get("type"),
                            "path": art.get("path") or art.get("location"),
                        }
                    )
        return out


def _override(task: TaskRecord) -> str | None:
    override: str | None = (task.get("options") or {}).get("constitution_override")
    return override


def _constitution(task: TaskRecord, current: Constitution | None) -> dict[str, Any] | None:
    """What ``task.ready`` carries: the task's override, else its project's current
    constitution, else nothing."""
    override = _override(task)
    if override is not None:
        digest = hashlib.sha256(override.encode()).hexdigest()
        return {"source": "override", "version": None, "sha256": digest, "text": override}
    if current is None:
        return None
    return {"source": "project", "version": current.version, "sha256": current.sha256, "text": current.text}
