"""Schemathesis over every operation of the served schema, against the app in-process, on
SQLite and PostgreSQL (a migrated database each, emptied first).

Checks: no 5xx; every response documented (status code, content type, body schema,
headers); invalid inputs (the negative cases) rejected with a 4xx. Cases are seeded, so a
run is repeatable, and bounded (``max-examples`` per operation, plus the coverage phase's
deterministic cases).

How it runs: the schema is the document the app serves (``GET /api/v1/openapi.json``, read
once at import, without the lifespan: building the document needs no database). Each test
sends its cases to a live app of the backend under test. Schemathesis (4.x) runs ASGI apps
on its own event-loop thread and enters the app's lifespan there on the first request
(``schemathesis.python.asgi``), so the container lives on the loop that serves the
requests; ``start_service`` (pytest's loop) would build a second one. The fixture shuts the
lifespan down afterwards. (Not ``schemathesis.pytest.from_fixture``: with pytest 9.2 it fails
on ``Function._nodeid``; not ``from_asgi``: it would enter a lifespan at import.)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestration_service.main import create_app
from tests.conftest import make_settings, truncate_all

pytestmark = pytest.mark.slow

OPENAPI_URL = "/api/v1/openapi.json"
BASE_URL = f"http://{asgi.HOST}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
CONFIG: dict[str, Any] = {
    "seed": 20_261_124,
    "generation": {"max-examples": 30, "database": "none"},
    # A stream is cut after its first event (the task stream's snapshot), or at the timeout
    # (a feed with nothing to replay); the transport returns what arrived as the response.
    "max-stream-events": 1,
    "request-timeout": 10,
    "operations": [
        # The feed's headers follow one read of the log's head: 0.2 s was too short for
        # that on a loaded CI machine (a read timeout before any header is an error).
        {"include-name": "GET /api/v1/events", "request-timeout": 1.0},
    ],
}


def served_document() -> dict[str, Any]:
    """GET /api/v1/openapi.json from an app whose lifespan never runs (nothing connects)."""
    app = create_app(make_settings("sqlite+aiosqlite:///never-opened.db"))

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            return await client.get(OPENAPI_URL)

    response = asyncio.run(fetch())
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


schema = schemathesis.openapi.from_dict(served_document(), config=schemathesis.Config.from_dict(CONFIG))


@dataclass(frozen=True)
class Live:
    """A running app (lifespan entered by Schemathesis) and what ``seed`` stored in it."""

    app: Any
    project_id: str
    completed_task: str
    provenance_id: str
    open_task: str
    review_id: str  # an open review (of a third task)


def _wait_for(client: asgi.ASGIClient, task_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        doc: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").json()
        if doc["status"] == status:
            return doc
        assert time.monotonic() < deadline, f"task {task_id} is {doc['status']}, expected {status}"
        time.sleep(0.02)


def _event(name: str, data: dict[str, Any]) -> bytes:
    envelope = {"specversion": "1.0", "type": f"dats.{name}", "source": "/contract-tests"}
    envelope |= {"id": str(uuid.uuid4()), "subject": data["task_id"], "data": data}
    return json.dumps(envelope).encode()


def seed(app: Any) -> Live:
    """A completed task (artifacts, metrics, provenance, history) and a running one, over HTTP:
    the fuzzed lists then have items, and ``test_known_resources_conform`` has real ids."""
    project = "proj-contract"
    ce = {"content-type": "application/cloudevents+json"}
    with asgi.get_client(app) as client:
        ids = []
        for _ in range(2):
            r = client.post(
                "/api/v1/tasks", json={"description": "Write a fibonacci function", "project_id": project}
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["task_id"])
            _wait_for(client, ids[-1], "running")
        done, running = ids
        output = {
            "task_id": done,
            "worker_id": "worker-1",
            "model_used": "gemma3:12b",
            "tokens_input": 12,
            "tokens_output": 34,
            "execution_time_ms": 900,
            "artifacts": [{"id": "art-1", "type": "code", "path": "fib.py", "checksum": "sha256:ab"}],
            "output": {"content": "def fib(n): ..."},
        }
        assert client.post("/api/v1/events", data=_event("task.output.created", output), headers=ce).ok
        validated = {"task_id": done, "confidence": 0.8}
        assert client.post("/api/v1/events", data=_event("task.validated", validated), headers=ce).ok
        doc = _wait_for(client, done, "completed")
        r = client.post(
            "/api/v1/tasks", json={"description": "Write a fibonacci function", "project_id": project}
        )
        reviewed = r.json()["task_id"]
        _wait_for(client, reviewed, "running")
        output["task_id"] = reviewed
        assert client.post("/api/v1/events", data=_event("task.output.created", output), headers=ce).ok
        requested = {"task_id": reviewed, "reason": "unsure", "checklist": ["n = 0"]}
        assert client.post("/api/v1/events", data=_event("review.requested", requested), headers=ce).ok
        _wait_for(client, reviewed, "awaiting_review")
        review_id = client.get("/api/v1/reviews", params={"status": "open"}).json()["items"][0]["review_id"]
    assert doc["provenance_id"], doc
    return Live(app, project, done, doc["provenance_id"], running, review_id)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    asyncio.run(truncate_all(url))
    app = create_app(make_settings(url))
    try:
        yield seed(app)
    finally:
        asgi.shutdown_lifespans()


@schema.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
def test_api(case: schemathesis.Case, live: Live) -> None:
    case.call_and_validate(base_url=BASE_URL, app=live.app, checks=CHECKS)


KNOWN: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
    # method, path, path parameters (attribute names of Live), query
    ("GET", "/api/v1/tasks", {}, {"project_id": "project_id"}),
    ("GET", "/api/v1/tasks/{task_id}", {"task_id": "completed_task"}, {}),
    ("GET", "/api/v1/tasks/{task_id}/history", {"task_id": "completed_task"}, {}),
    ("GET", "/api/v1/tasks/{task_id}/stream", {"task_id": "completed_task"}, {}),
    ("POST", "/api/v1/tasks/{task_id}/cancel", {"task_id": "open_task"}, {}),
    ("GET", "/api/v1/projects", {}, {}),
    ("GET", "/api/v1/projects/{project_id}/status", {"project_id": "project_id"}, {}),
    ("GET", "/api/v1/provenance", {}, {"project_id": "project_id"}),
    ("GET", "/api/v1/provenance/{record_id}", {"record_id": "provenance_id"}, {}),
    ("GET", "/api/v1/reviews", {}, {"project_id": "project_id"}),
    ("GET", "/api/v1/reviews/{review_id}", {"review_id": "review_id"}, {}),
    ("POST", "/api/v1/reviews/{review_id}/approve", {"review_id": "review_id"}, {}),
]


@pytest.mark.parametrize(("method", "path", "params", "query"), KNOWN, ids=[f"{m} {p}" for m, p, *_ in KNOWN])
def test_known_resources_conform(
    live: Live, method: str, path: str, params: dict[str, str], query: dict[str, str]
) -> None:
    """What fuzzing rarely reaches: the 200 documents of resources that exist."""
    operation = schema[path][method]
    case = operation.Case(
        path_parameters={name: getattr(live, attr) for name, attr in params.items()},
        query={name: getattr(live, attr) for name, attr in query.items()},
    )
    response = case.call_and_validate(base_url=BASE_URL, app=live.app, checks=CHECKS[:-1])
    assert response.status_code == 200, response.text
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        body = response.json()
        assert body.get("items", [body]), "expected the seeded resources to be listed"
