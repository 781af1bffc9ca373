"""Defect 1 of the trust-boundary issue, the de-duplication part: event ids are per project.

Consumed events are de-duplicated by (project, CloudEvent id). A key for project A that
posts an event for its own task with an id project B's worker will use later (ids such as
``task-<id>-output-1`` are guessable; clients retry with stable ids) must not make B's real
event a "duplicate", whichever path (the ingress with B's key, or the trusted broker path)
delivers it; nor may a "duplicate" answer tell A that B used an id. Within one project the
same id stays a duplicate, whichever path delivered it first.
"""

from __future__ import annotations

import uuid
from typing import Any

from orchestration_service.events.handlers import parse_envelope
from tests.conftest import Service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.security.test_ingress_scope import Tenant, tenants

__all__ = ["tenants"]  # the two-project fixture, with auth on

Tenants = tuple[Service, Tenant, Tenant]


def _with_id(envelope: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {**envelope, "id": event_id}


async def _trusted(svc: Service, envelope: dict[str, Any]) -> str:
    """Process as the broker consumer does (no key, every project)."""
    return (await svc.container.events.process(parse_envelope(envelope))).outcome


async def test_an_id_claimed_by_another_project_does_not_drop_our_event_over_the_ingress(
    tenants: Tenants,
) -> None:
    _, a, b = tenants
    mine, theirs = await a.running_task(), await b.running_task()
    event_id = f"task-{theirs}-output-1"  # the id B's worker will use: guessable
    r = await a.post_event(_with_id(output_event(mine), event_id))
    assert r.status_code == 202 and r.json()["outcome"] == "processed", r.text

    r = await b.post_event(_with_id(output_event(theirs), event_id))
    assert r.status_code == 202, r.text
    assert r.json()["outcome"] == "processed"
    await b.wait_for(theirs, "validating")


async def test_an_id_claimed_by_another_project_does_not_drop_our_event_from_the_broker(
    tenants: Tenants,
) -> None:
    svc, a, b = tenants
    mine, theirs = await a.running_task(), await b.running_task()
    event_id = f"task-{theirs}-output-1"
    assert (await a.post_event(_with_id(output_event(mine), event_id))).status_code == 202

    assert await _trusted(svc, _with_id(output_event(theirs), event_id)) == "processed"
    await b.wait_for(theirs, "validating")


async def test_a_duplicate_answer_does_not_tell_that_another_project_used_an_id(tenants: Tenants) -> None:
    _, a, b = tenants
    theirs, mine = await b.running_task(), await a.running_task()
    event_id = str(uuid.uuid4())
    assert (await b.post_event(_with_id(output_event(theirs), event_id))).status_code == 202

    r = await a.post_event(_with_id(output_event(mine), event_id))
    assert r.status_code == 202 and r.json()["outcome"] == "processed", r.text


async def test_within_one_project_an_id_stays_a_duplicate_whichever_path_delivered_it(
    tenants: Tenants,
) -> None:
    svc, _, b = tenants
    first, second = await b.running_task(), await b.running_task()
    ingress_first, broker_first = str(uuid.uuid4()), str(uuid.uuid4())

    assert (await b.post_event(_with_id(output_event(first), ingress_first))).status_code == 202
    assert await _trusted(svc, _with_id(output_event(first), ingress_first)) == "duplicate"

    assert await _trusted(svc, _with_id(output_event(second), broker_first)) == "processed"
    r = await b.post_event(_with_id(output_event(second), broker_first))
    assert r.status_code == 200 and r.json()["outcome"] == "duplicate", r.text

    # The key is the project's, not the task's: the same id for another task of B is a duplicate.
    third = await b.running_task()
    r = await b.post_event(_with_id(output_event(third), ingress_first))
    assert r.status_code == 200 and r.json()["outcome"] == "duplicate", r.text
    assert (await b.snapshot(third))[0]["status"] == "running"


async def test_a_rollback_id_claimed_by_another_project_does_not_drop_ours(tenants: Tenants) -> None:
    svc, a, b = tenants
    mine, theirs = await a.completed_task("art-alpha"), await b.completed_task("art-beta")
    event_id = str(uuid.uuid4())
    r = await a.post_event(
        _with_id(cloud_event("rollback.requested", {"provenance_id": mine["provenance_id"]}), event_id)
    )
    assert r.status_code == 202 and r.json()["outcome"] == "processed", r.text

    by_artifact = _with_id(cloud_event("rollback.requested", {"artifact_id": "art-beta"}), event_id)
    r = await b.post_event(by_artifact)
    assert r.status_code == 202 and r.json()["outcome"] == "processed", r.text
    record = (await b.client.get(f"/api/v1/provenance/{theirs['provenance_id']}")).json()
    assert record["is_tainted"]
    # Within B, the same id is now a duplicate, whichever record it names.
    by_record = _with_id(
        cloud_event("rollback.requested", {"provenance_id": theirs["provenance_id"]}), event_id
    )
    assert await _trusted(svc, by_record) == "duplicate"


async def test_a_project_rollback_is_de_duplicated_in_its_project(tenants: Tenants) -> None:
    svc, a, b = tenants
    r = await b.client.post("/api/v1/projects/beta/checkpoints", json={"description": "before"})
    assert r.status_code == 201, r.text
    checkpoint = r.json()["id"]
    event_id = str(uuid.uuid4())
    mine = await a.completed_task("art-alpha-2")
    r = await a.post_event(
        _with_id(cloud_event("rollback.requested", {"provenance_id": mine["provenance_id"]}), event_id)
    )
    assert r.status_code == 202, r.text

    theirs = _with_id(
        cloud_event("rollback.requested", {"project_id": "beta", "checkpoint_id": checkpoint}), event_id
    )
    assert await _trusted(svc, theirs) == "processed"
    assert await _trusted(svc, theirs) == "duplicate"
