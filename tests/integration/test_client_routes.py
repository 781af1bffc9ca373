"""The client library's project, provenance-write and dead-letter routes against a real
server process on both backends, through the blocking and the asyncio client: answers as
typed models, problem+json answers as typed exceptions, and which writes a lost answer
resends (a taint, with its cascade id) and which it does not (a checkpoint, a replay)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestration_service.client import (
    AsyncClient,
    Client,
    Conflict,
    Invalid,
    NotFound,
    TransportFailed,
)
from orchestration_service.client import cloudevents as ce
from orchestration_service.client.worker import HttpFeed, Job, Output, Worker
from tests.integration.test_client import FAST, SOURCE, LoseFirstAnswers
from tests.process import ServerProcess


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess({"ORCH_DATABASE_URL": clean_db}, log_path=tmp_path / "server.log").start() as s:
        yield s


def lossy(server: ServerProcess, lost: int) -> tuple[Client, LoseFirstAnswers]:
    """A client whose first ``lost`` answers are lost on the way back (the requests applied)."""
    transport = LoseFirstAnswers(lost)
    http = httpx.Client(base_url=server.url + "/api/v1", transport=transport, timeout=10)
    return Client(server.url, http=http, retry=FAST), transport


def test_projects_through_the_blocking_client(server: ServerProcess) -> None:
    with Client(server.url) as api:
        made = api.create_project(
            "alpha",
            name="Alpha",
            description="the first",
            constitution="# v1",
            settings={"max_concurrent": 3},
        )
        assert (made.project_id, made.name, made.archived) == ("alpha", "Alpha", False)
        assert made.settings["max_concurrent"] == 3 and made.constitution and made.constitution.version == 1
        assert made.effective_settings["max_concurrent"].source == "project"
        assert made.status.total == 0
        with pytest.raises(Conflict) as exists:
            api.create_project("alpha")
        assert exists.value.status == 409 and exists.value.title and "alpha" in exists.value.detail
        with pytest.raises(Invalid):
            api.create_project("not a valid id")
        with pytest.raises(NotFound):
            api.get_project("no-such-project")
        with pytest.raises(NotFound):
            api.update_project("no-such-project", name="x")

        # Only what is given changes; a constitution becomes the next version.
        changed = api.update_project("alpha", name="Alpha 2", constitution="# v2")
        assert (changed.name, changed.description) == ("Alpha 2", "the first")
        assert changed.constitution and changed.constitution.version == 2
        cleared = api.update_project("alpha", name=None, settings={"max_concurrent": None})
        assert cleared.name is None and cleared.description == "the first"
        assert cleared.settings["max_concurrent"] is None
        assert cleared.effective_settings["max_concurrent"].source == "configuration"
        assert api.get_constitution("alpha").text == "# v2"
        first = api.get_constitution("alpha", 1)
        assert (first.version, first.text, first.project_id) == (1, "# v1", "alpha")
        with pytest.raises(NotFound):
            api.get_constitution("alpha", 9)

        # A checkpoint, the status; no provenance health before the first record.
        point = api.create_checkpoint("alpha", description="before the change", trigger="milestone")
        assert (point.project_id, point.trigger, point.is_valid) == ("alpha", "milestone", True)
        listed = api.checkpoints("alpha")
        assert listed.total == 1 and listed.items[0].id == point.id
        with pytest.raises(NotFound):
            api.consistency("alpha")

        # Archiving is refused while a task is unfinished, then done, then done again.
        task = api.submit("Write a function", "alpha")
        status = api.project_status("alpha")
        assert status.total == 1 and status.oldest_waiting_task is not None
        assert status.oldest_waiting_task.task_id == task.task_id
        with pytest.raises(Conflict):
            api.archive_project("alpha")
        api.cancel_task(task.task_id)
        archived = api.archive_project("alpha")
        assert archived.archived and api.archive_project("alpha").archived_at == archived.archived_at
        assert "alpha" not in {p.project_id for p in api.list_projects().items}
        everyone = api.list_projects(include_archived=True).items
        assert [p.archived for p in everyone if p.project_id == "alpha"] == [True]


async def test_projects_through_the_asyncio_client(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as api:
        made = await api.create_project("beta", constitution="# rules")
        assert made.constitution and made.constitution.version == 1
        with pytest.raises(Conflict):
            await api.create_project("beta")
        assert (await api.update_project("beta", description="second")).description == "second"
        assert (await api.get_project("beta")).description == "second"
        assert (await api.get_constitution("beta")).text == "# rules"
        with pytest.raises(NotFound):
            await api.get_constitution("no-such-project")
        assert "beta" in {p.project_id for p in (await api.list_projects()).items}
        assert (await api.project_status("beta")).total == 0
        with pytest.raises(NotFound):
            await api.consistency("beta")  # no provenance record yet
        point = await api.create_checkpoint("beta")
        assert point.trigger == "manual"
        assert [c.id for c in (await api.checkpoints("beta", include_invalid=False)).items] == [point.id]
        assert (await api.archive_project("beta")).archived
        assert (await api.health_detailed()).dependencies


def test_a_checkpoint_is_not_resent_after_a_lost_answer(server: ServerProcess) -> None:
    with Client(server.url) as api:
        api.create_project("gamma")
        fragile, transport = lossy(server, 1)
        with fragile, pytest.raises(TransportFailed):
            fragile.create_checkpoint("gamma", description="once")
        assert transport.sent == 1
        assert api.checkpoints("gamma").total == 1  # it was applied, and only once


async def complete(client: AsyncClient, project: str, plan: dict[str, list[str]]) -> dict[str, str]:
    """Run one task per artifact of ``plan`` (artifact -> the artifacts it consumes) to
    completion through the worker helper; each artifact's provenance record id."""
    tasks = {}
    for art, inputs in plan.items():
        tasks[(await client.submit(f"Write {art}", project)).task_id] = (art, inputs)

    def work(job: Job) -> Output:
        art, inputs = tasks[job.task_id]
        artifact = {"id": art, "type": "code", "path": f"/tmp/{art}.py"}
        return Output([artifact], extra={"inputs": [{"artifact_id": i} for i in inputs]})

    async def validate(job: Job) -> None:
        verdict = {"task_id": job.task_id, "attempt": job.attempt, "confidence": 1.0}
        await client.post_event(ce.envelope("task.validated", "/tests/qa", verdict))

    worker = Worker(HttpFeed(client), work, source=SOURCE, on_output=validate)
    await asyncio.wait_for(worker.run(limit=len(tasks)), 60)
    records = {}
    for task_id, (art, _) in tasks.items():
        done = await client.wait(task_id, timeout=30)
        assert done.status == "completed" and done.provenance_id, done
        records[art] = done.provenance_id
    return records


async def test_provenance_queries_and_writes(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as aapi:
        rec = await complete(aapi, "prov", {"art-a": [], "art-b": ["art-a"]})
    with Client(server.url) as api:
        page = api.list_provenance(project_id="prov")
        assert page.total == 2 and {r.id for r in page.items} == set(rec.values())
        assert api.list_provenance(project_id="prov", is_tainted=True).total == 0
        assert api.provenance_by_artifact("art-a").id == rec["art-a"]
        with pytest.raises(NotFound):
            api.provenance_by_artifact("no-such-artifact")
        assert rec["art-a"] in {g.id for g in api.lineage(rec["art-b"]).items}

        # A taint whose answer is lost is sent again with the same cascade id: one cascade.
        fragile, transport = lossy(server, 1)
        with fragile:
            result = fragile.taint(rec["art-a"], "bad model", tainted_by="alice")
        assert transport.sent == 2 and result.already_applied
        trail = api.taint_events(cascade_id=result.cascade_id)
        assert sorted((e.action, e.artifact_id) for e in trail.items) == [
            ("suspect", "art-b"),
            ("taint", "art-a"),
        ]
        a, b = api.get_provenance(rec["art-a"]), api.get_provenance(rec["art-b"])
        assert a.is_tainted and a.tainted_by == "alice" and b.is_suspect and not b.is_tainted
        cause = api.root_cause(rec["art-b"])
        assert (cause.root_cause, cause.root_cause_provenance_id) == ("art-a", rec["art-a"])
        health = api.consistency("prov")
        assert (health.total_records, health.tainted_count, health.suspect_count) == (2, 1, 1)
        with pytest.raises(NotFound):
            api.taint(str(uuid.uuid4()), "bad")
        with pytest.raises(Invalid):
            api.taint(rec["art-a"], "")

    async with AsyncClient(server.url) as aapi:
        again = await aapi.taint(rec["art-a"], "bad model", cascade_id=result.cascade_id)
        assert again.already_applied and again.cascade_id == result.cascade_id
        assert (await aapi.taint_events(cascade_id=result.cascade_id)).total == 2
        cleared = await aapi.clear_suspect(rec["art-b"], reason="revalidated", cleared_by="qa")
        assert cleared.cleared and cleared.cascade_id == result.cascade_id
        assert not (await aapi.clear_suspect(rec["art-b"])).cleared  # nothing left to clear
        assert (await aapi.root_cause(rec["art-a"])).failed_artifact_id == "art-a"
        assert (await aapi.list_provenance(project_id="prov", is_suspect=True)).total == 0
        assert (await aapi.provenance_by_artifact("art-b", project_id="prov")).id == rec["art-b"]


async def test_dead_letters_shown_replayed_and_discarded(server: ServerProcess) -> None:
    ghost = str(uuid.uuid4())
    poison = ce.envelope("task.progress", SOURCE, {"task_id": ghost, "attempt": 1, "worker_id": "w-1"})
    with Client(server.url) as api:
        with pytest.raises(Invalid) as refused:  # its task does not exist: dead-lettered
            api.post_event(poison)
        assert refused.value.status == 422
        (letter,) = api.dead_letters().items
        assert (letter.source, letter.kind, letter.event_id) == ("ingress", "unknown-task", poison["id"])
        assert api.get_dead_letter(letter.id).payload == letter.payload

        # A replay whose answer is lost is not sent again (a retry could answer 404).
        fragile, transport = lossy(server, 1)
        with fragile, pytest.raises(TransportFailed):
            fragile.replay_dead_letter(letter.id)
        assert transport.sent == 1 and api.get_dead_letter(letter.id).replays == 1

    async with AsyncClient(server.url) as aapi:
        replayed = await aapi.replay_dead_letter(letter.id)  # still poison: it stays
        assert (replayed.outcome, replayed.kind) == ("dead_lettered", "unknown-task")
        assert (await aapi.get_dead_letter(letter.id)).replays == 2
        gone = await aapi.discard_dead_letter(letter.id)
        assert (gone.id, gone.outcome) == (letter.id, "discarded")
        with pytest.raises(NotFound):
            await aapi.discard_dead_letter(letter.id)
        with pytest.raises(NotFound):
            await aapi.replay_dead_letter(letter.id)
    with Client(server.url) as api:
        with pytest.raises(NotFound):
            api.get_dead_letter(str(uuid.uuid4()))
        with pytest.raises(NotFound):
            api.discard_dead_letter("not-an-id")
        assert api.dead_letters().total == 0
