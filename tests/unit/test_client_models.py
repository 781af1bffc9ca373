"""The client library's models and calls against ``contracts/openapi.yaml``: each model has
exactly its schema's fields and requires only what the schema requires, each call names a
route the document has, and the client's notion of "final" is the state machine's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from orchestration_service.client import calls as c
from orchestration_service.client import models as m
from orchestration_service.client import project_calls as pc
from orchestration_service.client import project_models as pm
from orchestration_service.domain.lifecycle import FINAL_STATES

OPENAPI = Path(__file__).resolve().parents[2] / "contracts" / "openapi.yaml"

# model -> the schema of the answer it reads
SCHEMAS: dict[type[BaseModel], str] = {
    m.Health: "Health",
    m.Artifact: "Artifact",
    m.SubtaskSummary: "SubtaskSummary",
    m.TaskProgress: "TaskProgress",
    m.TaskAccepted: "TaskAccepted",
    m.Task: "TaskDocument",
    m.TaskPage: "TaskPage",
    m.HistoryEntry: "HistoryEntry",
    m.TaskHistory: "TaskHistory",
    m.TaskTreeNode: "TaskTreeNode",
    m.TaskTree: "TaskTree",
    m.ReviewSummary: "ReviewSummary",
    m.Review: "ReviewDocument",
    m.ReviewPage: "ReviewPage",
    m.ProvenanceRecord: "ProvenanceRecord",
    m.ProvenancePage: "ProvenancePage",
    m.GraphRecord: "GraphRecord",
    m.Lineage: "Lineage",
    m.Impact: "Impact",
    m.Worker: "Worker",
    m.WorkerList: "WorkerList",
    m.TierQueue: "TierQueue",
    m.QueueList: "QueueList",
    m.Failure: "Failure",
    m.FailurePage: "FailurePage",
    m.DeadLetter: "DeadLetterDoc",
    m.DeadLetterPage: "DeadLetterPage",
    m.DetailedHealth: "DetailedHealth",
    m.TaintEvent: "TaintEvent",
    m.TaintEventPage: "TaintEventPage",
    m.RootCause: "RootCause",
    m.TaintResult: "TaintResult",
    m.ClearSuspectResult: "ClearSuspectResult",
    m.ReplayResult: "ReplayResult",
    m.DiscardResult: "DiscardResult",
    pm.ProjectSummary: "ProjectSummary",
    pm.ProjectList: "ProjectList",
    pm.EffectiveSetting: "EffectiveSetting",
    pm.ConstitutionRef: "ConstitutionRef",
    pm.Project: "ProjectView",
    pm.Constitution: "ConstitutionView",
    pm.OldestWaiting: "OldestWaiting",
    pm.ProjectStatus: "ProjectStatus",
    pm.Consistency: "Consistency",
    pm.Checkpoint: "Checkpoint",
    pm.CheckpointPage: "CheckpointPage",
}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


def names(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    """(every field's wire name, the required ones)."""
    fields = model.model_fields
    wire = {f.alias or n for n, f in fields.items()}
    return wire, {f.alias or n for n, f in fields.items() if f.is_required()}


@pytest.mark.parametrize("model", list(SCHEMAS), ids=lambda x: x.__name__)
def test_each_model_has_its_schemas_fields(model: type[BaseModel], openapi: dict[str, Any]) -> None:
    schema = openapi["components"]["schemas"][SCHEMAS[model]]
    wire, required = names(model)
    assert wire == set(schema["properties"]), f"{model.__name__} vs {SCHEMAS[model]}"
    assert required <= set(schema.get("required", [])), f"{model.__name__} requires more than the API"


def test_the_ingress_answer_model_matches(openapi: dict[str, Any]) -> None:
    answer = openapi["paths"]["/api/v1/events"]["post"]["responses"]["202"]["content"]["application/json"]
    assert names(m.EventResult)[0] == set(answer["schema"]["properties"])


# Every call the clients make, once (with every optional body field, so the body check sees them).
BUILT: list[c.Call[Any]] = [
    c.submit("x", "p", priority="high", options={"a": 1}),
    c.get_task("t"),
    c.list_tasks(),
    c.cancel_task("t", "r"),
    c.retry_task("t"),
    c.task_history("t"),
    c.task_tree("t"),
    c.list_reviews(),
    c.get_review("r"),
    c.decide_review("r", "approve", {}),
    c.decide_review("r", "reject", {}),
    c.decide_review("r", "request-changes", {}),
    c.get_provenance("p"),
    c.lineage("p"),
    c.impact("p"),
    c.post_event({}),
    c.workers(),
    c.queues(),
    c.failures(),
    c.dead_letters(),
    c.health(),
    c.health("live"),
    c.health("ready"),
    c.health_detailed(),
    c.get_dead_letter("d"),
    c.replay_dead_letter("d"),
    c.discard_dead_letter("d"),
    c.list_provenance(),
    c.taint_events(),
    c.provenance_by_artifact("a/b"),
    c.root_cause("p"),
    c.taint("p", "bad", tainted_by="me", cascade_id="c-1"),
    c.clear_suspect("p", reason="ok", cleared_by="me"),
    pc.list_projects(include_archived=True),
    pc.create_project("p", name="n", description="d", constitution="c", settings={"max_concurrent": 1}),
    pc.get_project("p"),
    pc.update_project("p", name="n", description="d", constitution="c", settings={"max_concurrent": 1}),
    pc.archive_project("p"),
    pc.get_constitution("p", 2),
    pc.project_status("p"),
    pc.consistency("p"),
    pc.checkpoints("p"),
    pc.create_checkpoint(
        "p", git_ref="g", rag_state_ref="r", work_product_ref="w", description="d", trigger="manual"
    ),
]


def test_every_call_names_a_documented_route(openapi: dict[str, Any]) -> None:
    for call in BUILT:
        operation = _operation(openapi, call)
        documented = {p["name"] for p in operation.get("parameters", [])}
        assert set(call.params) <= documented, f"{call.method} {call.path}: {set(call.params) - documented}"
        if isinstance(call.body, dict) and call.body and call.path != "/events":
            schema = _body_schema(openapi, operation)
            assert set(call.body) <= set(schema["properties"]), f"{call.method} {call.path}: body"


def test_every_documented_route_has_a_call(openapi: dict[str, Any]) -> None:
    """A route added to the API fails here until the client has it (or it is listed as left out)."""
    # Streams: ``follow_task`` and ``events`` open them (SSE, not a ``Call``).
    streams = {("get", "/api/v1/tasks/{task_id}/stream"), ("get", "/api/v1/events")}
    covered = {(call.method.lower(), _template(openapi, call)) for call in BUILT} | streams
    documented = {
        (method, path)
        for path, operations in openapi["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented - covered == set()


def test_retry_safety_per_write() -> None:
    """Resent after a lost answer only when a repeat changes nothing more and answers the
    same (``project_calls``' docstring)."""
    writes = {(call.method, call.path): call.idempotent for call in BUILT if call.method != "GET"}
    assert writes == {
        ("POST", "/tasks"): True,  # the idempotency key
        ("POST", "/tasks/t/cancel"): False,
        ("POST", "/tasks/t/retry"): False,
        ("POST", "/reviews/r/approve"): False,
        ("POST", "/reviews/r/reject"): False,
        ("POST", "/reviews/r/request-changes"): False,
        ("POST", "/events"): True,  # the CloudEvent id
        ("POST", "/dead-letters/d/replay"): False,
        ("DELETE", "/dead-letters/d"): False,
        ("POST", "/provenance/p/taint"): True,  # the cascade id
        ("POST", "/provenance/p/clear-suspect"): False,
        ("POST", "/projects"): False,
        ("PATCH", "/projects/p"): False,  # it carries a constitution: a new version each time
        ("DELETE", "/projects/p"): True,
        ("POST", "/projects/p/checkpoints"): False,
    }
    assert pc.update_project("p", name="n", settings={"max_concurrent": 2}).idempotent


def test_a_taint_carries_one_cascade_id_for_all_its_tries() -> None:
    call = c.taint("p", "bad")
    assert call.body["cascade_id"] and call.body["cascade_id"] != c.taint("p", "bad").body["cascade_id"]
    assert c.taint("p", "bad", cascade_id="mine").body["cascade_id"] == "mine"


def test_update_project_sends_only_what_is_given() -> None:
    assert pc.update_project("p").body == {}
    assert pc.update_project("p", name=None).body == {"name": None}  # clears it
    assert c.provenance_by_artifact("a/b:c").path == "/provenance/by-artifact/a%2Fb%3Ac"


def _template(openapi: dict[str, Any], call: c.Call[Any]) -> str:
    paths = openapi["paths"]
    path = "/api/v1" + call.path
    # A literal path wins over a template (``/provenance/taint-events`` is not ``/{record_id}``).
    found = [p for p in paths if _matches(p, path) and call.method.lower() in paths[p]]
    assert found, f"{call.method} {call.path} is not in the OpenAPI document"
    return min(found, key=lambda p: p.count("{"))


def _operation(openapi: dict[str, Any], call: c.Call[Any]) -> dict[str, Any]:
    operation: dict[str, Any] = openapi["paths"][_template(openapi, call)][call.method.lower()]
    return operation


def _body_schema(openapi: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    for option in schema.get("anyOf", [schema]):  # an optional body: the schema or null
        if "$ref" in option:
            resolved: dict[str, Any] = openapi["components"]["schemas"][option["$ref"].rsplit("/", 1)[1]]
            return resolved
    return dict(schema)


def test_list_tasks_offers_every_filter_the_route_has(openapi: dict[str, Any]) -> None:
    documented = {p["name"] for p in openapi["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert set(c.list_tasks().params) == documented


def test_final_statuses_are_the_state_machines() -> None:
    assert {s.value for s in FINAL_STATES} == m.FINAL_STATUSES


def _matches(template: str, path: str) -> bool:
    a, b = template.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))
