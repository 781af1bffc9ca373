"""Defect 2 of the trust-boundary issue (and the graph part of defect 12): provenance ids
are their project's, graph answers stay in the caller's projects and are bounded.

Two projects, two keys, the documented API: the same artifact id in both names two
artifacts; a cascade or rollback id of one project is unknown to the other; the root-cause
path of a record never names another project's record; lineage and impact answer at most
``limit`` entries per list and say ``truncated``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest

from orchestration_service.domain.errors import EventRejected
from orchestration_service.events.handlers import parse_envelope
from orchestration_service.repositories.provenance import Edge, ProvenanceRecord
from orchestration_service.services.lifecycle import utcnow
from tests.conftest import Service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.security.test_ingress_scope import Tenant, tenants

__all__ = ["tenants"]  # the fixture, shared with the ingress tests

API = "/api/v1"
Tenants = tuple[Service, Tenant, Tenant]


async def complete(t: Tenant, art: str, inputs: list[str] = ()) -> str:  # type: ignore[assignment]
    """A task of the tenant's project run to completion, producing ``art`` from ``inputs``."""
    task_id = await t.running_task()
    out = output_event(task_id, art=art, inputs=[{"artifact_id": i} for i in inputs])
    assert (await t.post_event(out)).status_code == 202
    r = await t.post_event(cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}))
    assert r.status_code == 202, r.text
    return str((await t.wait_for(task_id, "completed"))["provenance_id"])


async def get(t: Tenant, path: str, **params: Any) -> Any:
    r = await t.client.get(API + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def rollback(data: dict[str, Any]) -> dict[str, Any]:
    return cloud_event("rollback.requested", data, source="/cascade-service")


async def test_the_same_artifact_id_in_two_projects_names_two_artifacts(tenants: Tenants) -> None:
    _, a, b = tenants
    a_rec = await complete(a, "art-x")
    b_use = await complete(b, "art-b", inputs=["art-x"])  # beta's art-x: nobody made it yet
    assert (await get(b, f"/provenance/{b_use}/lineage"))["items"] == []
    assert (await get(b, "/projects/beta/consistency"))["orphaned_artifacts"] == 1
    b_rec = await complete(b, "art-x")  # beta's own producer of art-x: beta's consumer waited for it
    assert [i["id"] for i in (await get(b, f"/provenance/{b_use}/lineage"))["items"]] == [b_rec]
    assert (await get(b, "/provenance/by-artifact/art-x"))["id"] == b_rec
    assert (await get(a, "/provenance/by-artifact/art-x"))["id"] == a_rec
    assert (await get(a, f"/provenance/{a_rec}/impact"))["total_affected"] == 0

    # Alpha's taint of its art-x leaves beta's consumer alone.
    r = await a.client.post(f"{API}/provenance/{a_rec}/taint", json={"reason": "bad"})
    assert r.status_code == 200 and r.json()["suspect_count"] == 0, r.text
    assert not (await get(b, f"/provenance/{b_use}"))["is_suspect"]
    assert (await get(b, "/provenance/taint-events"))["total"] == 0
    # A later beta consumer links to beta's producer only.
    b_late = await complete(b, "art-c", inputs=["art-x"])
    assert [i["id"] for i in (await get(b, f"/provenance/{b_late}/lineage"))["items"]] == [b_rec]
    assert not (await get(b, f"/provenance/{b_late}"))["is_suspect"]


async def test_a_cascade_id_of_another_project_is_unknown(tenants: Tenants) -> None:
    _, a, b = tenants
    a_rec = await complete(a, "art-a")
    b_rec = await complete(b, "art-b")
    first = await a.client.post(f"{API}/provenance/{a_rec}/taint", json={"reason": "x", "cascade_id": "c-1"})
    assert first.status_code == 200 and not first.json()["already_applied"]

    theirs = await b.client.post(f"{API}/provenance/{b_rec}/taint", json={"reason": "y", "cascade_id": "c-1"})
    assert theirs.status_code == 200, theirs.text
    doc = theirs.json()
    assert (
        not doc["already_applied"] and doc["provenance_ids"] == [b_rec] and doc["artifact_ids"] == ["art-b"]
    )
    assert (await get(b, f"/provenance/{b_rec}"))["is_tainted"]
    trail = await get(b, "/provenance/taint-events", cascade_id="c-1")
    assert {e["provenance_id"] for e in trail["items"]} == {b_rec}
    # Alpha's own repeat is still a repeat.
    again = await a.client.post(f"{API}/provenance/{a_rec}/taint", json={"reason": "z", "cascade_id": "c-1"})
    assert again.json()["already_applied"] and again.json()["provenance_ids"] == [a_rec]


async def test_claiming_a_rollback_id_first_leaves_another_projects_rollback_alone(tenants: Tenants) -> None:
    _, a, b = tenants
    checkpoints = {}
    for t in (a, b):
        r = await t.client.post(f"{API}/projects/{t.project}/checkpoints", json={"git_ref": "v1"})
        assert r.status_code == 201, r.text
        checkpoints[t.project] = r.json()["id"]
    b_rec = await complete(b, "art-b")
    data = {"project_id": "alpha", "checkpoint_id": checkpoints["alpha"], "rollback_id": "rb-1"}
    assert (await a.post_event(rollback(data))).status_code == 202

    data = {"project_id": "beta", "checkpoint_id": checkpoints["beta"], "rollback_id": "rb-1"}
    r = await b.post_event(rollback(data))
    assert r.status_code == 202, r.text
    assert "already applied" not in r.json()["detail"] and "1 tainted" in r.json()["detail"]
    assert (await get(b, f"/provenance/{b_rec}"))["is_tainted"]


async def test_the_root_cause_path_stays_in_the_records_project(tenants: Tenants) -> None:
    """Legacy data (imported before ids were scoped) may link alpha's records through a beta
    record: alpha's root cause neither names it nor reaches past it."""
    svc, a, _ = tenants
    base = utcnow() - timedelta(hours=1)
    ids = {label: uuid.uuid4() for label in ("cause", "theirs", "mine")}
    projects = {"cause": "alpha", "theirs": "beta", "mine": "alpha"}
    async with svc.container.storage.transaction() as uow:
        repo = uow.provenance
        for i, (label, rid) in enumerate(ids.items()):
            await repo.insert(
                ProvenanceRecord(
                    **{
                        "id": rid,
                        "task_id": f"task-{label}",
                        "project_id": projects[label],
                        "status": "completed",
                        "created_at": base + timedelta(seconds=i),
                        "verification_status": "passed",
                        "is_tainted": label == "cause",
                        "outputs": [{"artifact_id": f"art-{label}", "type": "code"}],
                    }
                )
            )
            await repo.add_artifacts(projects[label], rid, [f"art-{label}"])
        await repo.add_dependencies(
            [
                Edge(artifact_id=ids["theirs"], depends_on=ids["cause"], via_artifact_id="art-cause"),
                Edge(artifact_id=ids["mine"], depends_on=ids["theirs"], via_artifact_id="art-theirs"),
            ]
        )
    doc = await get(a, f"/provenance/{ids['mine']}/root-cause")
    assert str(ids["theirs"]) not in orjson.dumps(doc).decode() and "art-theirs" not in doc["path"]
    assert doc["root_cause_provenance_id"] is None and doc["path_provenance_ids"] == []
    lineage = await get(a, f"/provenance/{ids['mine']}/lineage")
    assert str(ids["theirs"]) not in orjson.dumps(lineage).decode()


async def test_lineage_and_impact_of_a_deep_chain_are_bounded(service: Service) -> None:
    n = 40
    base = utcnow() - timedelta(hours=1)
    ids = [uuid.uuid4() for _ in range(n)]
    async with service.container.storage.transaction() as uow:
        repo = uow.provenance
        for i, rid in enumerate(ids):
            await repo.insert(
                ProvenanceRecord(
                    **{
                        "id": rid,
                        "task_id": f"t{i}",
                        "project_id": "p",
                        "status": "completed",
                        "created_at": base + timedelta(seconds=i),
                        "verification_status": "passed",
                        "outputs": [
                            {"artifact_id": f"a{i}", "type": "code"},
                            {"artifact_id": f"b{i}", "type": "code"},
                        ],
                    }
                )
            )
            await repo.add_artifacts("p", rid, [f"a{i}", f"b{i}"])
        await repo.add_dependencies(
            [Edge(artifact_id=ids[i + 1], depends_on=ids[i], via_artifact_id=f"a{i}") for i in range(n - 1)]
        )
    r = await service.client.get(f"{API}/provenance/{ids[-1]}/lineage", params={"limit": 10})
    assert r.status_code == 200, r.text
    lineage = r.json()
    assert len(lineage["items"]) == 10 and lineage["truncated"] is True and lineage["total"] == n - 1
    assert [i["depth"] for i in lineage["items"]] == list(range(1, 11))  # the nearest first
    whole = (await service.client.get(f"{API}/provenance/{ids[-1]}/lineage")).json()
    assert len(whole["items"]) == n - 1 and whole["truncated"] is False

    impact = (await service.client.get(f"{API}/provenance/{ids[0]}/impact", params={"limit": 5})).json()
    assert impact["truncated"] is True and impact["total_affected"] == n - 1
    assert len(impact["items"]) == 5 and len(impact["transitive_dependents"]) <= 5
    assert impact["direct_dependents"] == ["a1", "b1"]
    too_many = await service.client.get(f"{API}/provenance/{ids[0]}/impact", params={"limit": 10_001})
    assert too_many.status_code == 422


async def test_a_trusted_rollback_naming_only_an_artifact_of_two_projects_is_refused(
    tenants: Tenants,
) -> None:
    svc, a, b = tenants
    a_rec = await complete(a, "art-x")
    b_rec = await complete(b, "art-x")
    events = svc.container.events
    with pytest.raises(EventRejected) as refused:
        await events.process(parse_envelope(rollback({"artifact_id": "art-x"})))
    assert refused.value.kind == "schema" and "project_id" in refused.value.reason
    assert not (await get(a, f"/provenance/{a_rec}"))["is_tainted"]

    await events.process(parse_envelope(rollback({"artifact_id": "art-x", "project_id": "beta"})))
    assert (await get(b, f"/provenance/{b_rec}"))["is_tainted"]
    assert not (await get(a, f"/provenance/{a_rec}"))["is_tainted"]
    # With alpha's key, the artifact is alpha's (beta's one is not looked at).
    assert (await a.post_event(rollback({"artifact_id": "art-x"}))).status_code == 202
    assert (await get(a, f"/provenance/{a_rec}"))["is_tainted"]
