"""contracts/openapi.yaml is the published contract: it must be what the running app serves.

On a failure, regenerate it with ``make contract`` and review the diff.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_settings, start_service

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "contracts" / "openapi.yaml"
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
HINT = "contracts/openapi.yaml is out of date: run `make contract` and commit the result"
MAX_LINES = 40


def differences(committed: Any, served: Any, where: str = "$") -> Iterator[str]:
    """Where two parsed documents differ, one line each (key order is not a difference)."""
    if isinstance(committed, dict) and isinstance(served, dict):
        for key in sorted(committed.keys() - served.keys(), key=str):
            yield f"{where}[{key!r}]: only in contracts/openapi.yaml"
        for key in sorted(served.keys() - committed.keys(), key=str):
            yield f"{where}[{key!r}]: only in the served schema"
        for key in sorted(committed.keys() & served.keys(), key=str):
            yield from differences(committed[key], served[key], f"{where}[{key!r}]")
    elif isinstance(committed, list) and isinstance(served, list) and len(committed) == len(served):
        for i, (a, b) in enumerate(zip(committed, served, strict=True)):
            yield from differences(a, b, f"{where}[{i}]")
    elif committed != served or type(committed) is not type(served):
        yield f"{where}: contracts/openapi.yaml has {committed!r}, the served schema has {served!r}"


def report(lines: list[str]) -> str:
    shown = lines[:MAX_LINES]
    more = f"\n  … and {len(lines) - MAX_LINES} more" if len(lines) > MAX_LINES else ""
    return f"{HINT}\n  " + "\n  ".join(shown) + more


def committed_contract() -> dict[str, Any]:
    assert CONTRACT.is_file(), f"{CONTRACT} is missing: run `make contract`"
    document: dict[str, Any] = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return committed_contract()


async def test_contract_matches_the_served_schema(sqlite_url: str, contract: dict[str, Any]) -> None:
    svc, lifespan = await start_service(make_settings(sqlite_url))
    try:
        r = await svc.client.get("/api/v1/openapi.json")
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
    assert r.status_code == 200
    served = r.json()
    lines = list(differences(contract, served))
    assert not lines, report(lines)


def test_the_contract_does_not_depend_on_the_machine(tmp_path: Path, contract: dict[str, Any]) -> None:
    """`python -m orchestration_service.contracts` elsewhere, with other settings, prints the same."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {
        "ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/other.db",
        "ORCH_MAX_BODY_BYTES": "1234",
        "ORCH_PORT": "9999",
        "ORCH_CONFIG": str(tmp_path / "other.yaml"),
    }
    (tmp_path / "other.yaml").write_text("task_management:\n  max_concurrent_per_project: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "orchestration_service.contracts"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert str(tmp_path) not in out
    assert str(ROOT) not in CONTRACT.read_text(encoding="utf-8")
    lines = list(differences(contract, yaml.safe_load(out)))
    assert not lines, report(lines)


def test_every_error_response_is_a_problem(contract: dict[str, Any]) -> None:
    wrong = []
    for name, operation in operations(contract):
        for code, response in operation["responses"].items():
            if not code.startswith(("4", "5")) or code == "503":  # 503: the health documents
                continue
            content = response.get("content", {})
            if content != {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}:
                wrong.append(f"{name} {code}: {content}")
    assert not wrong, "\n".join(wrong)
    assert "HTTPValidationError" not in contract["components"]["schemas"]
    assert contract["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]


def test_edge_errors_are_documented_where_they_happen(contract: dict[str, Any]) -> None:
    missing = []
    for name, operation in operations(contract):
        codes = set(operation["responses"])
        if "requestBody" in operation:
            missing += [f"{name}: {c}" for c in ("400", "413", "422") if c not in codes]
        if "{" in name:  # an id in the path: unknown ones are 404
            missing += [f"{name}: 404"] if "404" not in codes else []
    assert not missing, "\n".join(missing)
    by_name = dict(operations(contract))
    # An id in the path is any string (unknown ones are 404), so nothing there fails validation.
    assert "422" not in by_name["GET /api/v1/tasks/{task_id}"]["responses"]
    assert "422" in by_name["GET /api/v1/tasks"]["responses"]
    assert set(by_name["GET /api/v1/health"]["responses"]) == {"200"}


def test_success_responses_document_their_bodies(contract: dict[str, Any]) -> None:
    """A real schema for every success body: not FastAPI's ``{"type": "string"}`` placeholder
    (what it writes for a response class that is not a JSONResponse), and for event streams
    one per event (``itemSchema``)."""
    wrong = []
    for name, operation in operations(contract):
        ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert ok, f"{name}: no success response"
        for code, response in ok.items():
            for media_type, media in response.get("content", {}).items():
                key = "itemSchema" if media_type == "text/event-stream" else "schema"
                if media.get(key) in (None, {}, {"type": "string"}):
                    wrong.append(f"{name} {code} {media_type}: {media}")
            if not response.get("content"):
                wrong.append(f"{name} {code}: no content")
    assert not wrong, "\n".join(wrong)
    by_name = dict(operations(contract))
    ok = by_name["GET /api/v1/tasks/{task_id}"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/TaskDocument"}


def test_differences_point_at_what_changed(contract: dict[str, Any]) -> None:
    served = copy.deepcopy(contract)
    served["info"]["version"] = "9.9.9"
    del served["paths"]["/api/v1/health"]
    served["components"]["schemas"]["Extra"] = {"type": "object"}
    lines = list(differences(contract, served))
    assert lines == [
        "$['components']['schemas']['Extra']: only in the served schema",
        f"$['info']['version']: contracts/openapi.yaml has {contract['info']['version']!r}, "
        "the served schema has '9.9.9'",
        "$['paths']['/api/v1/health']: only in contracts/openapi.yaml",
    ]
    assert "make contract" in report(lines)
