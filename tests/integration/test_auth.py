"""API keys scoped to projects: 401 without a valid key, scopes, and other projects invisible."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestration_service.domain.access import Scope
from tests.conftest import Service, make_settings, start_service
from tests.integration.test_event_lifecycle import output_event

PROBLEM = "application/problem+json"


@pytest.fixture
async def secured(clean_db: str) -> AsyncIterator[Service]:
    svc, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def key(svc: Service, scope: str, projects: list[str] | None) -> dict[str, str]:
    raw, _ = await svc.container.keys.create(name=f"test-{scope}", scope=Scope(scope), projects=projects)
    return {"Authorization": f"Bearer {raw}"}


async def test_no_unknown_or_revoked_key_is_401(secured: Service) -> None:
    c = secured.client
    for headers in ({}, {"Authorization": "Bearer orch_nope"}, {"X-API-Key": "wrong"}):
        r = await c.get("/api/v1/tasks", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["type"].endswith(":unauthorized")
    assert (await c.get("/api/v1/health")).status_code == 200
    assert (await c.get("/api/v1/health/live")).status_code == 200
    assert (await c.get("/metrics")).status_code == 200
    raw, row = await secured.container.keys.create(name="gone", scope=Scope.ADMIN, projects=None)
    assert (await c.get("/api/v1/tasks", headers={"X-API-Key": raw})).status_code == 200
    await secured.container.keys.revoke(row.id)
    assert (await c.get("/api/v1/tasks", headers={"X-API-Key": raw})).status_code == 401


async def test_scopes(secured: Service) -> None:
    c = secured.client
    reader, writer, admin = [await key(secured, s, ["p1"]) for s in ("read", "write", "admin")]
    body = {"description": "x", "project_id": "p1"}
    assert (await c.post("/api/v1/tasks", json=body, headers=reader)).status_code == 403
    created = await c.post("/api/v1/tasks", json=body, headers=writer)
    assert created.status_code == 201
    tid = created.json()["task_id"]
    assert (await c.get(f"/api/v1/tasks/{tid}", headers=reader)).status_code == 200
    assert (await c.post(f"/api/v1/tasks/{tid}/cancel", headers=reader)).status_code == 403
    ev = output_event(tid)
    headers = {"content-type": "application/cloudevents+json"}
    r = await c.post("/api/v1/events", content=orjson.dumps(ev), headers={**headers, **writer})
    assert r.status_code == 403
    r = await c.post("/api/v1/events", content=orjson.dumps(ev), headers={**headers, **admin})
    assert r.status_code in (202, 200, 422)  # authorised (the task may not be running yet)
    assert (await c.post(f"/api/v1/tasks/{tid}/cancel", headers=writer)).status_code == 200


async def test_other_projects_look_like_they_do_not_exist(secured: Service) -> None:
    c = secured.client
    mine, theirs = await key(secured, "write", ["mine"]), await key(secured, "write", ["theirs"])
    everyone = await key(secured, "read", None)
    t_mine = (
        await c.post("/api/v1/tasks", json={"description": "a", "project_id": "mine"}, headers=mine)
    ).json()
    t_theirs = (
        await c.post("/api/v1/tasks", json={"description": "b", "project_id": "theirs"}, headers=theirs)
    ).json()
    forbidden = await c.post("/api/v1/tasks", json={"description": "c", "project_id": "theirs"}, headers=mine)
    assert forbidden.status_code == 403
    other = t_theirs["task_id"]
    for path in (
        f"/api/v1/tasks/{other}",
        f"/api/v1/tasks/{other}/history",
        "/api/v1/projects/theirs/status",
    ):
        r = await c.get(path, headers=mine)
        assert r.status_code == 404, path
        assert r.json()["type"].endswith(":not-found")
    assert (await c.post(f"/api/v1/tasks/{other}/cancel", headers=mine)).status_code == 404
    listing = (await c.get("/api/v1/tasks", headers=mine)).json()
    assert [t["task_id"] for t in listing["items"]] == [t_mine["task_id"]]
    assert listing["total"] == 1
    assert (await c.get("/api/v1/tasks", params={"project_id": "theirs"}, headers=mine)).json()["total"] == 0
    assert [p["project_id"] for p in (await c.get("/api/v1/projects", headers=mine)).json()["items"]] == [
        "mine"
    ]
    all_projects = (await c.get("/api/v1/projects", headers=everyone)).json()["items"]
    assert {p["project_id"] for p in all_projects} == {"mine", "theirs"}
    feed = await c.get("/api/v1/events", params={"after": 0, "limit": 2}, headers=mine)
    subjects: set[Any] = {line for line in feed.text.splitlines() if other in line}
    assert not subjects, "another project's events leaked into the feed"


def test_keys_cli_create_list_revoke(clean_db: str, tmp_path: Path) -> None:
    env = {"ORCH_DATABASE_URL": clean_db, "ORCH_CONFIG": str(Path(__file__).parents[1] / "empty-config.yaml")}
    binary = str(Path(sys.executable).parent / "orchestration-service")
    made = subprocess.run(
        [binary, "keys", "create", "--name", "ci", "--project", "p1", "--project", "p2", "--scope", "write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip()
    assert raw.startswith("orch_")
    listing = subprocess.run([binary, "keys", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert "ci" in listing.stdout and "p1,p2" in listing.stdout
    assert raw not in listing.stdout, "a key must never be shown again"
    key_id = next(line.split()[0] for line in listing.stdout.splitlines() if " ci " in f" {line} ")
    revoked = subprocess.run(
        [binary, "keys", "revoke", key_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert revoked.returncode == 0, revoked.stderr
    usage = subprocess.run(
        [binary, "keys", "create", "--name", "x", "--scope", "read"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 2
