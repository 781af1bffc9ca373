"""Issue 16, defect 9: a page on another site must not change anything through an operator's
browser. State-changing requests with a foreign ``Origin`` or ``Sec-Fetch-Site: cross-site``
are refused with 403 ``cross-site-request``, auth on or off, fast lane included; requests
without those headers (curl, the CLI, services) and same-origin ones (the dashboard) pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestration_service.cross_site import same_origin
from tests.conftest import Service, make_settings, start_service

PROBLEM = "application/problem+json"
CROSS_SITE = "urn:dats:orchestration:problem:cross-site-request"
EVIL = {"Origin": "http://evil.example"}
OWN = "http://localhost"  # the in-process client's Host (auth off: a loopback name, as with `make run`)


@pytest.fixture(params=[True, False], ids=["fast-lane", "no-fast-lane"])
async def svc(clean_db: str, request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    settings = make_settings(
        clean_db, server={"fast_lane": request.param, "allowed_origins": ["https://console.example:8443"]}
    )
    service, lifespan = await start_service(settings)
    await service.client.aclose()
    service.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url=OWN)
    try:
        yield service
    finally:
        await service.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def submit(svc: Service, headers: dict[str, str] | None = None) -> Any:
    body = {"description": "Write a fibonacci function", "project_id": "proj-1"}
    return await svc.client.post("/api/v1/tasks", json=body, headers=headers or {})


def assert_refused(r: Any) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["type"] == CROSS_SITE


async def test_cancel_from_a_foreign_origin_is_refused_and_changes_nothing(svc: Service) -> None:
    task = (await submit(svc)).json()
    before = (await svc.client.get(f"/api/v1/tasks/{task['task_id']}")).json()
    r = await svc.client.post(f"/api/v1/tasks/{task['task_id']}/cancel", headers=EVIL)
    assert_refused(r)
    after = (await svc.client.get(f"/api/v1/tasks/{task['task_id']}")).json()
    assert after["status"] == before["status"] != "cancelled"


async def test_sec_fetch_site_cross_site_is_refused(svc: Service) -> None:
    task = (await submit(svc)).json()
    r = await svc.client.post(
        f"/api/v1/tasks/{task['task_id']}/cancel", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert_refused(r)
    assert (await svc.client.get(f"/api/v1/tasks/{task['task_id']}")).json()["status"] != "cancelled"


@pytest.mark.parametrize(
    "headers",
    [EVIL, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}, {"Origin": "http://localhost:8000"}],
    ids=["foreign-origin", "fetch-site", "null-origin", "other-port"],
)
async def test_a_cross_site_submission_is_refused_on_the_fast_lane_too(
    svc: Service, headers: dict[str, str]
) -> None:
    assert_refused(await submit(svc, headers))
    assert (await svc.client.get("/api/v1/tasks")).json()["total"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the CLI, services
        {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},  # the dashboard
        {"Origin": "http://LOCALHOST:80"},
        {"Origin": "https://console.example:8443", "Sec-Fetch-Site": "same-site"},  # allowed_origins
    ],
    ids=["no-headers", "same-origin", "same-origin-spelled-out", "configured-origin"],
)
async def test_same_origin_and_header_less_requests_pass(svc: Service, headers: dict[str, str]) -> None:
    r = await submit(svc, headers)
    assert r.status_code == 201, r.text
    cancel = await svc.client.post(f"/api/v1/tasks/{r.json()['task_id']}/cancel", headers=headers)
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] == "cancelled"


async def test_reads_from_a_foreign_origin_still_answer(svc: Service) -> None:
    task = (await submit(svc)).json()
    r = await svc.client.get(f"/api/v1/tasks/{task['task_id']}", headers=EVIL)
    assert r.status_code == 200
    assert (
        await svc.client.get("/api/v1/tasks", headers={"Sec-Fetch-Site": "cross-site"})
    ).status_code == 200


async def test_refused_with_auth_on_before_the_key_is_looked_at(clean_db: str) -> None:
    service, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    try:
        r = await service.client.post("/api/v1/tasks", json={}, headers=EVIL)
        assert_refused(r)
    finally:
        await service.client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:8000", "127.0.0.1:8000", False),
        ("https://orch.example", "orch.example", True),  # TLS ended at a proxy keeping Host
        ("https://orch.example", "orch.example:443", True),
        ("http://orch.example", "orch.example:8000", False),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://[::1]:8000", "[::1]:8001", False),
        ("http://a.example:8000/path", "a.example:8000", False),
        ("http://user@a.example:8000", "a.example:8000", False),
        ("http://a.example:8000", None, False),
        ("garbage", "a.example", False),
    ],
)
def test_same_origin(origin: str, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same


# -- DNS rebinding (auth off): a browser's request must be addressed to a loopback host ---------
REBOUND = "http://evil.example:8000"  # a name the attacker pointed at 127.0.0.1


def _client(svc: Service, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url=base_url)


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"Sec-Fetch-Site": "same-origin"}),  # a same-origin read of the rebound page
        ("POST", {"Origin": REBOUND, "Sec-Fetch-Site": "same-origin"}),
        ("POST", {"Origin": REBOUND}),
    ],
    ids=["read", "write", "write-origin-only"],
)
async def test_a_rebound_name_is_refused_to_browsers_with_auth_off(
    svc: Service, method: str, headers: dict[str, str]
) -> None:
    task = (await submit(svc)).json()
    async with _client(svc, REBOUND) as browser:
        path = f"/api/v1/tasks/{task['task_id']}" + ("/cancel" if method == "POST" else "")
        assert_refused(await browser.request(method, path, headers=headers))
    assert (await svc.client.get(f"/api/v1/tasks/{task['task_id']}")).json()["status"] != "cancelled"


async def test_other_hosts_serve_clients_that_are_not_browsers_and_allowed_origins(svc: Service) -> None:
    async with _client(svc, REBOUND) as curl:
        assert (await curl.get("/api/v1/tasks")).status_code == 200  # no browser headers
    async with _client(svc, "https://console.example:8443") as console:
        r = await console.get("/api/v1/tasks", headers={"Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 200  # the host of server.allowed_origins
    for loopback in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://app.localhost"):
        async with _client(svc, loopback) as browser:
            r = await browser.get("/api/v1/tasks", headers={"Sec-Fetch-Site": "same-origin"})
            assert r.status_code == 200, loopback


async def test_with_auth_on_the_key_decides_not_the_host(clean_db: str) -> None:
    service, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    try:
        async with _client(service, REBOUND) as browser:
            r = await browser.get("/api/v1/tasks", headers={"Sec-Fetch-Site": "same-origin"})
            assert r.status_code == 401  # no key: the API-key check answers, not the host rule
    finally:
        await service.client.aclose()
        await lifespan.__aexit__(None, None, None)
