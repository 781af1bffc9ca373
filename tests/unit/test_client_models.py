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


def test_every_call_names_a_documented_route(openapi: dict[str, Any]) -> None:
    built = [
        c.submit("x", "p"),
        c.get_task("t"),
        c.list_tasks(),
        c.cancel_task("t"),
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
    ]
    paths = openapi["paths"]
    for call in built:
        template = next(
            (p for p in paths if _matches(p, "/api/v1" + call.path) and call.method.lower() in paths[p]), None
        )
        assert template is not None, f"{call.method} {call.path} is not in the OpenAPI document"
        documented = {p["name"] for p in paths[template][call.method.lower()].get("parameters", [])}
        assert set(call.params) <= documented, f"{call.method} {template}: {set(call.params) - documented}"


def test_list_tasks_offers_every_filter_the_route_has(openapi: dict[str, Any]) -> None:
    documented = {p["name"] for p in openapi["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert set(c.list_tasks().params) == documented


def test_final_statuses_are_the_state_machines() -> None:
    assert {s.value for s in FINAL_STATES} == m.FINAL_STATUSES


def _matches(template: str, path: str) -> bool:
    a, b = template.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))
