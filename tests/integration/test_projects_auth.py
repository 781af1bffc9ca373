"""Projects with API keys: creating needs an admin key for every project or one naming the
project; reading and changing follow the key's projects (another project answers 404) and
scopes."""

from __future__ import annotations

from tests.conftest import Service
from tests.integration.test_auth import PROBLEM, key, secured  # noqa: F401 - the fixture


async def test_creating_needs_an_admin_key_for_that_project(secured: Service) -> None:  # noqa: F811
    c = secured.client
    everything = await key(secured, "admin", None)
    mine = await key(secured, "admin", ["p1"])
    writer = await key(secured, "write", ["p1", "p2"])
    r = await c.post("/api/v1/projects", json={"project_id": "p1"}, headers=writer)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    r = await c.post("/api/v1/projects", json={"project_id": "p2"}, headers=mine)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    assert (await c.post("/api/v1/projects", json={"project_id": "p1"}, headers=mine)).status_code == 201
    assert (
        await c.post("/api/v1/projects", json={"project_id": "p3"}, headers=everything)
    ).status_code == 201
    assert (await c.post("/api/v1/projects", json={"project_id": "p4"})).status_code == 401


async def test_reading_and_changing_follow_the_keys_projects_and_scopes(secured: Service) -> None:  # noqa: F811
    c = secured.client
    admin = await key(secured, "admin", None)
    for p in ("p1", "p2"):
        body = {"project_id": p, "constitution": f"# {p}"}
        assert (await c.post("/api/v1/projects", json=body, headers=admin)).status_code == 201
    reader = await key(secured, "read", ["p1"])
    writer = await key(secured, "write", ["p1"])
    own_admin = await key(secured, "admin", ["p1"])
    assert (await c.get("/api/v1/projects/p1", headers=reader)).status_code == 200
    assert (await c.get("/api/v1/projects/p1/constitution", headers=reader)).json()["text"] == "# p1"
    listed = (await c.get("/api/v1/projects", headers=reader)).json()["items"]
    assert [p["project_id"] for p in listed] == ["p1"]
    for path in ("/api/v1/projects/p2", "/api/v1/projects/p2/constitution", "/api/v1/projects/p2/status"):
        r = await c.get(path, headers=reader)
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM), path
    change = {"settings": {"max_concurrent": 4}}
    for headers in (reader, writer):
        assert (await c.patch("/api/v1/projects/p1", json=change, headers=headers)).status_code == 403
        assert (await c.delete("/api/v1/projects/p1", headers=headers)).status_code == 403
    assert (await c.patch("/api/v1/projects/p2", json=change, headers=own_admin)).status_code == 404
    assert (await c.delete("/api/v1/projects/p2", headers=own_admin)).status_code == 404
    r = await c.patch("/api/v1/projects/p1", json=change, headers=own_admin)
    assert r.status_code == 200 and r.json()["settings"]["max_concurrent"] == 4
    assert (await c.delete("/api/v1/projects/p1", headers=own_admin)).status_code == 200
    # The other project is untouched.
    other = (await c.get("/api/v1/projects/p2", headers=admin)).json()
    assert other["settings"]["max_concurrent"] is None and other["archived_at"] is None
