"""The client library's retry policy at its port boundary (an httpx transport answering as
the service would): what is retried, with which key, and what is raised."""

from __future__ import annotations

import httpx
import pytest

from orchestration_service.client import (
    Client,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportFailed,
    Unauthorized,
    Unavailable,
)

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)
ACCEPTED = {
    "task_id": "t-1",
    "project_id": "p",
    "status": "pending",
    "created_at": "2026-01-01T00:00:00Z",
    "estimated_completion": "2026-01-01T00:01:00Z",
}


def client(answers: list[httpx.Response | Exception], seen: list[httpx.Request]) -> Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.Client(base_url="http://svc/api/v1", transport=httpx.MockTransport(handle))
    return Client("http://svc", http=http, retry=FAST)


def problem(status: int, title: str = "x", **headers: str) -> httpx.Response:
    body = {"type": f"https://errors/{status}", "title": title, "status": status, "detail": f"d{status}"}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json", **headers})


@pytest.mark.parametrize(
    "failure",
    [problem(503), problem(429, **{"Retry-After": "0"}), problem(502), httpx.ConnectError("refused")],
    ids=["503", "429", "502", "connect"],
)
def test_a_submission_is_retried_with_the_same_idempotency_key(failure: httpx.Response | Exception) -> None:
    seen: list[httpx.Request] = []
    with client([failure, httpx.Response(201, json=ACCEPTED)], seen) as api:
        assert api.submit("Write", "p").task_id == "t-1"
    assert len(seen) == 2
    assert seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]


def test_a_lost_answer_is_retried_for_an_idempotent_call_only() -> None:
    seen: list[httpx.Request] = []
    with client([httpx.ReadError("cut"), httpx.Response(201, json=ACCEPTED)], seen) as api:
        api.submit("Write", "p")  # carries its key: safe
    seen.clear()
    with client([httpx.ReadError("cut")], seen) as api, pytest.raises(TransportFailed):
        api.cancel_task("t-1")  # may have been applied: not sent twice
    assert len(seen) == 1


def test_retries_give_up_after_the_policys_attempts() -> None:
    seen: list[httpx.Request] = []
    with client([problem(503)] * 3, seen) as api, pytest.raises(Unavailable) as raised:
        api.health()
    assert len(seen) == 3 and raised.value.status == 503 and raised.value.detail == "d503"


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, Invalid), (422, Invalid), (401, Unauthorized), (403, Forbidden), (404, NotFound),
     (409, Conflict), (500, ServerError)],
)  # fmt: skip
def test_problems_are_typed_and_not_retried(status: int, error: type[Exception]) -> None:
    seen: list[httpx.Request] = []
    with client([problem(status, title="Nope")], seen) as api, pytest.raises(error) as raised:
        api.get_task("t-1")
    assert len(seen) == 1
    assert (raised.value.status, raised.value.type, raised.value.title) == (  # type: ignore[attr-defined]
        status,
        f"https://errors/{status}",
        "Nope",
    )


def test_a_429_that_stays_is_rate_limited() -> None:
    seen: list[httpx.Request] = []
    with client([problem(429)] * 3, seen) as api, pytest.raises(RateLimited):
        api.list_tasks()
    assert len(seen) == 3


def test_a_project_change_is_resent_unless_it_carries_a_constitution() -> None:
    seen: list[httpx.Request] = []
    with client([problem(502), problem(404)], seen) as api, pytest.raises(NotFound):
        api.update_project("p", name="n")  # values: the same after a repeat
    assert len(seen) == 2 and seen[0].content == seen[1].content == b'{"name":"n"}'
    seen.clear()
    with client([problem(502)], seen) as api, pytest.raises(ServerError):
        api.update_project("p", constitution="# v2")  # a repeat would add a second version
    assert len(seen) == 1


def test_a_taint_is_resent_with_its_cascade_id() -> None:
    seen: list[httpx.Request] = []
    with client([httpx.ReadError("cut"), problem(404)], seen) as api, pytest.raises(NotFound):
        api.taint("r-1", "bad")
    assert len(seen) == 2 and seen[0].content == seen[1].content and b'"cascade_id"' in seen[0].content
