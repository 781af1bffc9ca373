"""The access line of a task submission carries the request id, the created task's id and
its project (issue 16, defect 13), through the fast lane and through the reference route."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from orchestration_service.logs import JsonFormatter
from tests.conftest import make_settings, start_service


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records() -> Iterator[Records]:
    handler = Records()
    access = logging.getLogger("orchestration_service.access")
    saved = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        access.removeHandler(handler)
        access.setLevel(saved)


@pytest.mark.parametrize("fast_lane", [True, False])
async def test_submission_access_line_has_request_task_and_project(
    clean_db: str, access_records: Records, fast_lane: bool
) -> None:
    svc, lifespan = await start_service(make_settings(clean_db, server={"fast_lane": fast_lane}))
    try:
        r = await svc.client.post(
            "/api/v1/tasks",
            json={"description": "correlate me", "project_id": "proj-log"},
            headers={"X-Request-ID": "req-corr-1"},
        )
        assert r.status_code == 201
        task_id = r.json()["task_id"]
        status = await svc.client.get(f"/api/v1/tasks/{task_id}", headers={"X-Request-ID": "req-corr-2"})
        assert status.status_code == 200
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
    post = next(x for x in access_records.records if x.__dict__.get("method") == "POST")
    assert post.__dict__["status"] == 201
    assert post.__dict__.get("task_id") == task_id
    assert post.__dict__.get("project_id") == "proj-log"
    assert post.__dict__.get("request_id") == "req-corr-1"
    line = orjson.loads(JsonFormatter().format(post))
    assert (line["request_id"], line["task_id"], line["project_id"]) == ("req-corr-1", task_id, "proj-log")
    if fast_lane:
        get = next(x for x in access_records.records if x.__dict__.get("method") == "GET")
        assert get.__dict__.get("task_id") == task_id
