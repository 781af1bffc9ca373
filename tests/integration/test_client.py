"""The client library (``orchestration_service.client``) against a real server process on
both backends: submissions (a retried one is still one task), reads and filters, errors as
typed exceptions, following a task, and the worker helper over the HTTP feed end to end."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestration_service.client import AsyncClient, Client, Conflict, Invalid, NotFound, TransportFailed
from orchestration_service.client import cloudevents as ce
from orchestration_service.client.calls import NO_RETRY, RetryPolicy
from orchestration_service.client.worker import FilePosition, HttpFeed, Job, Output, TaskFailed, Worker
from tests.process import ServerProcess, free_port

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
SOURCE = "/tests/client-worker"


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess({"ORCH_DATABASE_URL": clean_db}, log_path=tmp_path / "server.log").start() as s:
        yield s


class LoseFirstAnswers(httpx.HTTPTransport):
    """Sends each request to the server, but for the first ``n`` drops the answer on the way
    back, as a proxy or a network cut would: the request was applied, the client never knew."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.sent += 1
        if self.sent <= self.n:
            response.read()
            response.close()
            raise httpx.ReadError("answer lost", request=request)
        return response


def test_a_retried_submission_is_one_task(server: ServerProcess) -> None:
    transport = LoseFirstAnswers(2)
    http = httpx.Client(base_url=server.url + "/api/v1", transport=transport, timeout=10)
    with Client(server.url, http=http, retry=FAST) as api, Client(server.url) as plain:
        accepted = api.submit("Write a fibonacci function", "retried")
        assert transport.sent == 3  # two answers lost, the third try answered
        page = plain.list_tasks(project_id="retried")
        assert page.total == 1 and page.items[0].task_id == accepted.task_id
        # Without retries the lost answer is the caller's to see, as a TransportFailed.
        once = httpx.Client(base_url=server.url + "/api/v1", transport=LoseFirstAnswers(1), timeout=10)
        with Client(server.url, http=once, retry=NO_RETRY) as fragile, pytest.raises(TransportFailed):
            fragile.submit("Write a fibonacci function", "retried", idempotency_key="k-1")
        # ... and sending it again with the same key gives the same task, not a second one.
        again = plain.submit("Write a fibonacci function", "retried", idempotency_key="k-1")
        assert plain.list_tasks(project_id="retried").total == 2
        assert again.task_id != accepted.task_id


def test_reads_filters_and_paging(server: ServerProcess) -> None:
    with Client(server.url) as api:
        ids = [api.submit(f"Write function {i}", "reads", priority=p).task_id for i, p in
               enumerate(["low", "high", "high"])]  # fmt: skip
        api.submit("Write elsewhere", "other")
        task = api.get_task(ids[0])
        assert task.task_id == ids[0] and task.project_id == "reads" and task.priority == "low"
        assert api.list_tasks(project_id="reads").total == 3
        high = api.list_tasks(project_id="reads", priority="high")
        assert {t.task_id for t in high.items} == set(ids[1:])
        assert api.list_tasks(project_id="reads", status=["pending", "running"]).total == 3
        assert api.list_tasks(project_id="reads", status="completed").total == 0
        assert api.list_tasks(project_id="reads", created_after="2000-01-01T00:00:00Z").total == 3
        assert api.list_tasks(project_id="reads", created_before="2000-01-01T00:00:00Z").total == 0
        assert api.list_tasks(project_id="reads", created_before=task.created_at).total <= 1
        assert {t.task_id for t in api.iter_tasks(project_id="reads", limit=1)} == set(ids)
        history = api.task_history(ids[0])
        assert history.items and history.items[0].to == "pending"
        assert api.task_tree(ids[0]).task_id == ids[0]
        assert api.health().status and api.health("ready").status
        assert api.queues().items is not None and api.workers().total == 0
        assert api.list_reviews().total == 0
        assert api.failures(project_id="reads").total == 0 and api.dead_letters().total == 0


def test_errors_are_typed_exceptions(server: ServerProcess) -> None:
    with Client(server.url) as api:
        with pytest.raises(NotFound) as missing:
            api.get_task("no-such-task")
        assert missing.value.status == 404 and missing.value.type and missing.value.title
        assert missing.value.detail
        with pytest.raises(Invalid) as invalid:
            api.submit("", "errors")
        assert invalid.value.status in (400, 422) and invalid.value.errors
        accepted = api.submit("Write a function", "errors")
        api.cancel_task(accepted.task_id, "changed my mind")
        with pytest.raises(Conflict) as conflict:
            api.cancel_task(accepted.task_id)
        assert conflict.value.status == 409
        with pytest.raises(NotFound):
            api.get_provenance("no-such-record")
    closed = free_port()
    with Client(f"http://127.0.0.1:{closed}", retry=FAST) as nowhere, pytest.raises(TransportFailed):
        nowhere.health()


async def test_the_worker_completes_tasks_over_the_http_feed(server: ServerProcess, tmp_path: Path) -> None:
    async with AsyncClient(server.url) as client:
        reported: dict[str, Any] = {}

        def work(job: Job) -> Output:
            job.report(0.5, "halfway")
            # Hold the task until the heartbeat carrying the report is on the task itself.
            with Client(server.url) as probe:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    progress = probe.get_task(job.task_id).progress
                    if progress is not None and progress.message == "halfway":
                        reported[job.task_id] = progress
                        break
                    time.sleep(0.05)
            artifact = {"id": f"art-{job.task_id}", "type": "code", "path": f"/tmp/{job.task_id}.py"}
            return Output([artifact], output={"content": "ok"})

        async def validate(job: Job) -> None:
            verdict = {"task_id": job.task_id, "attempt": job.attempt, "confidence": 1.0}
            await client.post_event(ce.envelope("task.validated", "/tests/qa", verdict))

        position = FilePosition(tmp_path / "position")
        worker = Worker(HttpFeed(client, position), work, source=SOURCE, heartbeat_seconds=0.2,
                        on_output=validate)  # fmt: skip
        accepted = await client.submit("Write a fibonacci function", "worker")
        events, _ = await asyncio.wait_for(
            asyncio.gather(collect(client.follow_task(accepted.task_id)), worker.run(limit=1)), 60
        )
        done = await client.get_task(accepted.task_id)
        assert done.status == "completed" and done.artifacts[0].id == f"art-{accepted.task_id}"
        assert reported[accepted.task_id].value == 0.5  # the heartbeat reached the task
        assert events[0].event == "snapshot" and events[-1].event in ("status", "snapshot")
        assert position.load() is not None  # where a restart resumes
        # Posting the same output again (a retry after a lost answer) is a duplicate.
        again = ce.envelope(
            "task.output.created",
            SOURCE,
            {"task_id": accepted.task_id, "attempt": 1, "worker_id": worker.worker_id, "artifacts": []},
        )
        assert (await client.post_event(again)).outcome == "duplicate"
        # A restarted worker resumes after the handled announcement: nothing left to do.
        second = await client.submit("Write another function", "worker")
        rerun = Worker(HttpFeed(client, position), work, source=SOURCE, heartbeat_seconds=0.2,
                       on_output=validate)  # fmt: skip
        await asyncio.wait_for(rerun.run(limit=1), 30)
        assert (await client.wait(second.task_id, timeout=30)).status == "completed"
        assert rerun.handled == 1


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_a_failing_handler_posts_task_failed(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as client:

        async def fail(job: Job) -> Output:
            if "impossible" in job.description:
                raise TaskFailed("no model for this", retryable=False)
            return Output([{"id": "no-path", "type": "code"}])  # refused: no path nor location

        impossible = await client.submit("Write something impossible", "failing")
        malformed = await client.submit("Write something sloppily", "failing")
        worker = Worker(HttpFeed(client), fail, source=SOURCE)
        await asyncio.wait_for(worker.run(limit=2), 60)
        for task_id, reason in ((impossible.task_id, "no model"), (malformed.task_id, "output refused")):
            final = await client.wait(task_id, timeout=30)
            assert final.status == "failed" and reason in str(final.error), final.error


def test_wait_times_out_on_a_task_nobody_works_on(server: ServerProcess) -> None:
    with Client(server.url) as api:
        accepted = api.submit("Write a function nobody takes", "waiting")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            api.wait(accepted.task_id, timeout=1.0)
        assert time.monotonic() - started < 10


@pytest.mark.rabbitmq
async def test_the_worker_over_rabbitmq(pg_url: str, tmp_path: Path) -> None:
    from orchestration_service.client.rabbitmq import RabbitMQ
    from tests.conftest import AMQP_URL, truncate_all
    from tests.integration.test_rabbitmq_bus import delete_topology

    await truncate_all(pg_url)
    prefix = f"cl{secrets.token_hex(3)}."
    env = {"ORCH_DATABASE_URL": pg_url, "ORCH_BROKER_URL": AMQP_URL, "ORCH_EVENTS__NAME_PREFIX": prefix}
    transport = RabbitMQ(AMQP_URL, queue=f"{prefix}workers", prefix=prefix)
    try:
        with ServerProcess(env, log_path=tmp_path / "server.log").start() as server:
            async with AsyncClient(server.url) as client:
                transport.client = client
                seen: list[float | None] = []

                async def work(job: Job) -> Output:
                    job.report(0.25, "over amqp")
                    for _ in range(400):  # until the heartbeat is on the task (or 20 s)
                        progress = (await client.get_task(job.task_id)).progress
                        if progress is not None and progress.message == "over amqp":
                            seen.append(progress.value)
                            break
                        await asyncio.sleep(0.05)
                    return Output([{"id": f"art-{job.task_id}", "type": "code", "path": "/tmp/x.py"}])

                async def validate(job: Job) -> None:
                    verdict = {"task_id": job.task_id, "attempt": job.attempt, "confidence": 1.0}
                    await transport.post(ce.envelope("task.validated", "/tests/qa", verdict))

                await transport.declare(("*",))
                accepted = await client.submit("Write a parser", "amqp-client")
                worker = Worker(transport, work, source=SOURCE, heartbeat_seconds=0.2, on_output=validate)
                await asyncio.wait_for(worker.run(limit=1), 60)
                final = await client.wait(accepted.task_id, timeout=30)
                assert final.status == "completed" and seen == [0.25]
    finally:
        await transport.aclose()
        await delete_topology(prefix, extra_queues=(f"{prefix}workers",))


async def test_a_report_just_before_returning_reaches_the_task(server: ServerProcess, tmp_path: Path) -> None:
    # The heartbeat interval is long: the report goes out when made, not at the next beat.
    async with AsyncClient(server.url) as client:

        def quick(job: Job) -> Output:
            job.report(0.9, "almost done")
            return Output([{"id": f"art-{job.task_id}", "type": "code", "path": f"{tmp_path}/a.py"}])

        accepted = await client.submit("Write it quickly", "quick")
        worker = Worker(HttpFeed(client), quick, source=SOURCE, heartbeat_seconds=600)
        await asyncio.wait_for(worker.run(limit=1), 60)
        task = await client.get_task(accepted.task_id)
        assert task.status == "validating"  # no QA here: the output is in, waiting for a verdict
        assert task.progress is not None
        assert (task.progress.value, task.progress.message) == (0.9, "almost done")
