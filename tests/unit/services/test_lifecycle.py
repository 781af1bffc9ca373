"""Lifecycle steps on in-memory fakes of the ports: the rules, the rows, the history and the
published payloads, with no database (the same steps run on both databases in the
integration suites)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration_service.config import load_settings
from orchestration_service.domain.decomposition import CheckedPlan, PlannedSubtask
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import IllegalTransition, TaskStatus
from orchestration_service.repositories.tasks import TaskRecord
from orchestration_service.services.lifecycle import Lifecycle
from tests.unit.fakes import FakeUnitOfWork

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def lifecycle(limit: int = 2) -> Lifecycle:
    settings = load_settings(
        storage={"database_url": "sqlite+aiosqlite:///:memory:"},
        task_management={"max_concurrent_per_project": limit},
    )
    return Lifecycle(settings)


def row(n: int = 0, **values: Any) -> TaskRecord:
    at = T0 + timedelta(seconds=n)
    base: TaskRecord = {
        "id": uuid7(),
        "project_id": "p",
        "description": f"task {n}",
        "priority": "normal",
        "priority_rank": 1,
        "status": "pending",
        "mode": "single",
        "domain": "code",
        "tier": "small",
        "qa_profile": "standard",
        "options": {},
        "attempt": 0,
        "max_attempts": 2,
        "timeout_seconds": 60,
        "parent_id": None,
        "depth": 0,
        "context": None,
        "routed_at": at,
        "started_at": None,
        "artifacts": None,
        "provenance_id": None,
        "created_at": at,
        "updated_at": at,
    }
    base.update(values)
    return base


async def stored(uow: FakeUnitOfWork, *rows: TaskRecord) -> None:
    await uow.tasks.insert_many(rows)


def names(uow: FakeUnitOfWork) -> list[str]:
    return [e.name for e in uow.tasks.outbox]


async def test_a_transition_writes_row_history_and_status_event_and_counts_after_commit() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    seen: list[tuple[str | None, str]] = []
    lc.on_transition.append(lambda a, b: seen.append((a, b)))
    t = row(status="running", attempt=1)
    await stored(uow, t)
    done = await lc.transition(
        uow, t, TaskStatus.VALIDATING, reason="output", cause="test", changes={"output": 1}
    )
    assert done["status"] == "validating" and uow.tasks.rows[t["id"]]["output"] == 1
    assert [(h["from_status"], h["to_status"], h["reason"]) for h in uow.tasks.history_rows] == [
        ("running", "validating", "output")
    ]
    (status,) = uow.tasks.outbox
    assert status.name == "task.status.validating"
    assert {k: status.data[k] for k in ("from", "to", "attempt", "parent_id")} == {
        "from": "running",
        "to": "validating",
        "attempt": 1,
        "parent_id": None,
    }
    assert seen == []  # hooks run only once the unit of work commits
    uow.commit()
    assert seen == [("running", "validating")]


async def test_an_illegal_transition_writes_nothing() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    t = row(status="completed")
    await stored(uow, t)
    with pytest.raises(IllegalTransition):
        await lc.transition(uow, t, TaskStatus.RUNNING, reason="no", cause="test")
    assert uow.tasks.history_rows == [] and uow.tasks.outbox == []


async def test_dispatch_starts_as_many_as_the_limit_allows_with_inputs_of_dependencies() -> None:
    lc, uow = lifecycle(limit=2), FakeUnitOfWork()
    producer = row(0, status="completed", artifacts=[{"id": "a1", "type": "code", "path": "x.py"}])
    busy = row(1, status="running")
    first, second = row(2), row(3)
    await stored(uow, producer, busy, first, second)
    await uow.tasks.add_dependencies([{"task_id": first["id"], "depends_on_id": producer["id"]}])
    started = await lc.dispatch_projects(uow, ["p"])
    assert [t["id"] for t in started] == [first["id"]]  # one slot free at a limit of 2
    assert uow.tasks.locked_projects == ["p"]
    ready = next(e for e in uow.tasks.outbox if e.name == "task.ready.small")
    assert ready.data["attempt"] == 1 and ready.data["deadline"].endswith("Z")
    assert ready.data["context"]["inputs"] == [
        {
            "artifact_id": "a1",
            "task_id": str(producer["id"]),
            "provenance_id": None,
            "relationship": "consumed",
            "type": "code",
            "path": "x.py",
        }
    ]
    assert uow.tasks.rows[first["id"]]["status"] == "running"
    assert uow.tasks.rows[second["id"]]["status"] == "pending"


async def test_retry_then_fail_publishes_task_failed_and_frees_the_slot() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    freed: list[str] = []
    lc.on_slot_freed = freed.append
    t = row(status="running", attempt=1)
    await stored(uow, t)
    again = await lc.retry_or_fail(uow, t, reason="timeout", cause="sweeper", error="late")
    assert again["status"] == "running" and again["attempt"] == 2
    failed = await lc.retry_or_fail(uow, again, reason="timeout", cause="sweeper", error="late")
    assert failed["status"] == "failed" and failed["error"] == {"reason": "timeout", "detail": "late"}
    event = next(e for e in uow.tasks.outbox if e.name == "task.failed")
    assert event.data == {"task_id": str(t["id"]), "project_id": "p", "error": "late", "reason": "timeout"}
    uow.commit()
    assert freed == ["p"]


async def test_cancel_cascades_to_unfinished_subtasks() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    lc.on_slot_freed = lambda _p: None
    parent = row(0, status="decomposing")
    kids = [row(1, parent_id=parent["id"]), row(2, parent_id=parent["id"], status="completed")]
    await stored(uow, parent, *kids)
    await lc.cancel(uow, parent, reason="stop", cause="api")
    assert uow.tasks.rows[kids[0]["id"]]["status"] == "cancelled"
    assert uow.tasks.rows[kids[1]["id"]]["status"] == "completed"
    cancelled = [e for e in uow.tasks.outbox if e.name == "task.cancelled"]
    assert [e.data["reason"] for e in cancelled] == ["stop", "parent cancelled: stop"]


async def test_a_failed_subtask_fails_its_parent_and_cancels_the_others() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    lc.on_slot_freed = lambda _p: None
    parent = row(0, status="decomposing")
    bad, other = row(1, parent_id=parent["id"], status="running", attempt=2), row(2, parent_id=parent["id"])
    await stored(uow, parent, bad, other)
    await lc.fail(uow, bad, reason="worker failed", cause="event", error="boom", publish=False)
    assert uow.tasks.rows[parent["id"]]["status"] == "failed"
    assert uow.tasks.rows[other["id"]]["status"] == "cancelled"
    failed = [e for e in uow.tasks.outbox if e.name == "task.failed"]
    assert [e.subject for e in failed] == [str(parent["id"])]  # the worker's own failure is not re-announced


async def test_the_last_subtask_completes_the_parent_with_their_artifacts() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    lc.on_slot_freed = lambda _p: None
    parent = row(0, status="decomposing")
    done = row(1, parent_id=parent["id"], status="completed", artifacts=[{"id": "a"}])
    last = row(2, parent_id=parent["id"], status="validating", artifacts=[{"id": "b"}])
    await stored(uow, parent, done, last)
    finished = await lc.transition(uow, last, TaskStatus.COMPLETED, reason="validated", cause="qa")
    await lc.after_final(uow, finished)
    assert uow.tasks.rows[parent["id"]]["status"] == "completed"
    completed = next(e for e in uow.tasks.outbox if e.name == "task.completed")
    assert completed.data == {
        "task_id": str(parent["id"]),
        "project_id": "p",
        "provenance_id": None,
        "artifacts": [{"id": "a"}, {"id": "b"}],
    }


async def test_decompose_creates_pending_subtasks_with_dependencies() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    parent = row(0, options={"decompose": True, "tier": "large"})
    await stored(uow, parent)
    plan = CheckedPlan(
        subtasks=(PlannedSubtask("s1", "first"), PlannedSubtask("s2", "second", dependencies=("s1",))),
        longest_chain=2,
        child_depth=1,
    )
    kids = await lc.decompose(uow, parent, plan, cause="router")
    assert [k["description"] for k in kids] == ["first", "second"]
    assert all(k["tier"] == "large" and k["options"] == {"tier": "large"} for k in kids)
    assert uow.tasks.deps == [(kids[1]["id"], kids[0]["id"])]
    assert uow.tasks.rows[parent["id"]]["status"] == "decomposing"
    assert names(uow).count("task.created") == 2
    assert isinstance(kids[0]["id"], uuid.UUID)


def nested_lifecycle(cap: int) -> Lifecycle:
    settings = load_settings(
        storage={"database_url": "sqlite+aiosqlite:///:memory:"}, routing={"max_total_subtasks": cap}
    )
    return Lifecycle(settings)


TWO_STEPS = CheckedPlan(
    subtasks=(PlannedSubtask("s1", "first"), PlannedSubtask("s2", "second", dependencies=("s1",))),
    longest_chain=2,
    child_depth=2,
    roots=("s1",),
)


async def test_a_nested_plan_hands_the_parents_waits_to_its_first_subtasks() -> None:
    lc, uow = nested_lifecycle(10), FakeUnitOfWork()
    top = row(0, status="decomposing")
    before = row(1, parent_id=top["id"], depth=1)
    middle = row(2, parent_id=top["id"], depth=1)
    await stored(uow, top, before, middle)
    uow.tasks.deps.append((middle["id"], before["id"]))
    first, second = await lc.decompose(uow, middle, TWO_STEPS, cause="router")
    assert first["depth"] == second["depth"] == 2 and first["parent_id"] == middle["id"]
    assert sorted(uow.tasks.deps) == sorted(
        [(middle["id"], before["id"]), (second["id"], first["id"]), (first["id"], before["id"])]
    )


async def test_a_plan_past_the_tree_cap_creates_nothing_and_runs_whole() -> None:
    lc, uow = nested_lifecycle(3), FakeUnitOfWork()
    top = row(0, status="decomposing")
    a = row(1, parent_id=top["id"], depth=1, routing={"analyzer": "agent-service", "plan": []})
    b = row(2, parent_id=top["id"], depth=1)
    await stored(uow, top, a, b)
    assert await lc.decompose(uow, a, TWO_STEPS, cause="router") == []
    assert len(uow.tasks.rows) == 3 and uow.tasks.rows[a["id"]]["status"] == "pending"
    routing = uow.tasks.rows[a["id"]]["routing"]
    assert "plan" not in routing
    assert routing["not_decomposed"].startswith("the task tree would have 4 subtasks (2 already, 2 planned)")
    assert uow.tasks.history_rows[-1]["reason"] == f"runs whole: {routing['not_decomposed']}"


async def test_a_completed_parent_gets_the_record_its_recorder_writes() -> None:
    lc, uow = lifecycle(), FakeUnitOfWork()
    lc.on_slot_freed = lambda _p: None
    record_id = uuid7()
    seen: list[list[uuid.UUID]] = []

    async def recorder(_uow: Any, parent: TaskRecord, children: Any) -> uuid.UUID:
        seen.append([c["id"] for c in children])
        assert parent["artifacts"] == [{"id": "a"}]
        return record_id

    lc.record_parent = recorder
    parent = row(0, status="decomposing")
    last = row(1, parent_id=parent["id"], status="validating", artifacts=[{"id": "a"}])
    await stored(uow, parent, last)
    finished = await lc.transition(uow, last, TaskStatus.COMPLETED, reason="validated", cause="qa")
    await lc.after_final(uow, finished)
    assert seen == [[last["id"]]]
    assert uow.tasks.rows[parent["id"]]["provenance_id"] == record_id
    completed = next(e for e in uow.tasks.outbox if e.name == "task.completed")
    assert completed.data["provenance_id"] == str(record_id)
