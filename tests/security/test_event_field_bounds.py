"""Issue 16, defect 4: an event the schema accepts is one the database stores.

Every consumed field that ends in a column (directly or through the provenance record) is
bounded by that column: an oversize value is refused at the door (422 naming the field,
nothing stored), and a value at exactly the maximum goes all the way through
task.output.created -> task.validated -> completed, on both backends (SQLite ignores
lengths, so PostgreSQL is the one that matters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pydantic import BaseModel

from orchestration_service.events.bus import Disposition, InboundMessage
from orchestration_service.schemas.events import (
    ArtifactIn,
    InputIn,
    RollbackRequested,
    TaskOutputCreated,
    TaskRejected,
    TaskValidated,
)
from tests.conftest import Service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.integration.test_http_events import post_event, running, stored_counts
from tests.integration.test_tasks_api import wait_for_status

INT32 = 2**31 - 1
INT64 = 2**63 - 1


def _artifact(**over: Any) -> dict[str, Any]:
    return {"id": "art-1", "type": "code", "path": "a.py", "checksum": "sha256:ab", "size_bytes": 1, **over}


OUTPUT_OVERSIZE: list[tuple[str, dict[str, Any]]] = [
    ("data.worker_id", {"worker_id": "w" * 101}),
    ("data.model_used", {"model_used": "m" * 101}),
    ("data.tokens_input", {"tokens_input": INT32 + 1}),
    ("data.tokens_output", {"tokens_output": INT32 + 1}),
    ("data.execution_time_ms", {"execution_time_ms": INT64 + 1}),
    ("data.started_at", {"started_at": "0001-01-01T00:00:00+01:00"}),
    ("data.completed_at", {"completed_at": "9999-12-31T23:00:00-05:00"}),
    ("data.artifacts.0.id", {"artifacts": [_artifact(id="a" * 256)]}),
    ("data.artifacts.0.size_bytes", {"artifacts": [_artifact(size_bytes=INT64 + 1)]}),
    ("data.artifacts.0.checksum", {"artifacts": [_artifact(checksum="c" * 256)]}),
    ("data.artifacts.0.path", {"artifacts": [_artifact(path="p" * 4097)]}),
    ("data.inputs.0.artifact_id", {"inputs": [{"artifact_id": "i" * 256}]}),
    ("data.inputs.0.relationship", {"inputs": [{"artifact_id": "in-1", "relationship": "r" * 17}]}),
    (
        "data.inputs.0.version_at_consumption",
        {"inputs": [{"artifact_id": "in-1", "version_at_consumption": "v" * 256}]},
    ),
]

VALIDATED_OVERSIZE: list[tuple[str, dict[str, Any]]] = [
    ("data.qa_result_id", {"qa_result_id": "q" * 256}),
    ("data.qa_profile", {"qa_profile": "p" * 256}),
    ("data.verified_by", {"verified_by": "v" * 256}),
    ("data.artifact_id", {"artifact_id": "a" * 256}),
    ("data.artifacts.0.id", {"artifacts": [_artifact(id="a" * 256)]}),
    ("data.confidence", {"confidence": 1.5}),
]

ROLLBACK_OVERSIZE: list[tuple[str, dict[str, Any]]] = [
    ("data.artifact_id", {"artifact_id": "a" * 256}),
    ("data.provenance_id", {"provenance_id": "p" * 256}),
    ("data.cascade_id", {"artifact_id": "art-1", "cascade_id": "c" * 256}),
    ("data.rollback_id", {"project_id": "p", "checkpoint_id": "c", "rollback_id": "r" * 256}),
    ("data.project_id", {"project_id": "p" * 256, "checkpoint_id": "c"}),
    ("data.checkpoint_id", {"project_id": "p", "checkpoint_id": "c" * 256}),
]


async def _refused(svc: Service, envelope: dict[str, Any], field: str) -> None:
    before = await stored_counts(svc)
    r = await post_event(svc, envelope)
    assert r.status_code == 422, (field, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field, r.text
    assert await stored_counts(svc) == before


async def test_oversize_output_fields_are_refused(service: Service) -> None:
    tid = await running(service)
    for field, over in OUTPUT_OVERSIZE:
        await _refused(service, output_event(tid, **over), field)
    doc = (await service.client.get(f"/api/v1/tasks/{tid}")).json()
    assert doc["status"] == "running"


async def test_oversize_validation_fields_are_refused(service: Service) -> None:
    tid = await running(service)
    assert (await post_event(service, output_event(tid))).status_code == 202
    for field, over in VALIDATED_OVERSIZE:
        env = cloud_event("task.validated", {"task_id": tid, **over}, source="/qa-service")
        await _refused(service, env, field)
    rejected = cloud_event("task.rejected", {"task_id": tid, "qa_result_id": "q" * 256}, source="/qa")
    await _refused(service, rejected, "data.qa_result_id")
    doc = (await service.client.get(f"/api/v1/tasks/{tid}")).json()
    assert doc["status"] == "validating"


async def test_oversize_rollback_fields_are_refused(service: Service) -> None:
    for field, data in ROLLBACK_OVERSIZE:
        await _refused(service, cloud_event("rollback.requested", data, source="/ops"), field)


async def test_a_maximal_event_goes_all_the_way_to_completed(service: Service) -> None:
    tid = await running(service)
    art = "a" * 255
    output = output_event(
        tid,
        worker_id="w" * 100,
        model_used="m" * 100,
        tokens_input=INT32,
        tokens_output=INT32,
        execution_time_ms=INT64,
        started_at="0001-01-01T00:00:00Z",
        completed_at="9999-12-31T23:59:59.999999Z",
        artifacts=[_artifact(id=art, checksum="c" * 255, path="p" * 4096, size_bytes=INT64)],
        inputs=[{"artifact_id": "i" * 255, "relationship": "r" * 16, "version_at_consumption": "v" * 255}],
    )
    r = await post_event(service, output)
    assert r.status_code == 202, r.text
    validated = cloud_event(
        "task.validated",
        {
            "task_id": tid,
            "confidence": 1,
            "qa_result_id": "q" * 255,
            "qa_profile": "p" * 255,
            "verified_by": "v" * 255,
            "artifact_id": art,
        },
        source="/qa-service",
    )
    r = await post_event(service, validated)
    assert r.status_code == 202, r.text
    doc = await wait_for_status(service, tid, "completed")
    record = (await service.client.get(f"/api/v1/provenance/{doc['provenance_id']}")).json()
    assert record["worker_id"] == "w" * 100
    assert (record["tokens_input"], record["execution_time_ms"]) == (INT32, INT64)
    # The maximal ids also work as rollback targets.
    rollback = cloud_event(
        "rollback.requested", {"artifact_id": art, "cascade_id": "c" * 255, "reason": "bad"}, source="/ops"
    )
    r = await post_event(service, rollback)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("field", ["worker_id", "model_used"])
async def test_a_broker_event_with_an_oversize_field_is_dead_lettered(service: Service, field: str) -> None:
    tid = await running(service)
    env = output_event(tid, **{field: "x" * 101})
    msg = InboundMessage(body=orjson.dumps(env), routing_key="task.output.created", exchange="dats.tasks")
    result = await service.container.events.handle_message(msg)
    assert result.disposition == Disposition.DEAD_LETTER
    assert result.reason is not None and f"data.{field}" in result.reason


def _bounds(prop: dict[str, Any]) -> dict[str, Any]:
    """maxLength / maximum of a property, wherever the JSON Schema puts them."""
    found: dict[str, Any] = {}
    for part in [prop, *prop.get("anyOf", [])]:
        found.update({k: part[k] for k in ("maxLength", "maximum") if k in part})
    return found


@pytest.mark.parametrize(
    ("component", "model"),
    [
        ("TaskOutputCreatedData", TaskOutputCreated),
        ("TaskValidatedData", TaskValidated),
        ("TaskRejectedData", TaskRejected),
        ("RollbackRequestedData", RollbackRequested),
        ("Artifact", ArtifactIn),
        ("Input", InputIn),
    ],
)
def test_the_asyncapi_contract_states_the_bounds(component: str, model: type[BaseModel]) -> None:
    doc = yaml.safe_load((Path(__file__).parents[2] / "contracts" / "asyncapi.yaml").read_text())
    documented = doc["components"]["schemas"][component]["properties"]
    for name, prop in model.model_json_schema()["properties"].items():
        stated = documented[name]
        if "$ref" in stated:
            stated = doc["components"]["schemas"][stated["$ref"].rsplit("/", 1)[-1]]
        assert _bounds(stated) == _bounds(prop), f"{component}.{name}"
