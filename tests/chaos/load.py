"""The load that runs through every fault, each actor logging to one history.

* submitters: a steady rate of submissions with an ``Idempotency-Key``, retried with the same
  key (on the other replica) after a connection error, a timeout or a 5xx;
* workers and QA over RabbitMQ: consume ``task.ready.*`` from a durable queue, answer
  ``task.output.created`` then ``task.validated`` (a share ``task.rejected`` on the first
  attempt, a share ``task.failed`` by the worker), with event ids fixed by (task, attempt), so a
  redelivered ``task.ready`` repeats the same events;
* a canceller, an SSE follower (reconnecting with ``Last-Event-ID``), a status poller and a
  readiness prober.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson

TAP_QUEUE = "chaos-tap"  # every message on the three exchanges, drained at the end
READY_QUEUE = "chaos-workers"
EXCHANGES = ("task.events", "qa.events", "cascade.events")
PROBE_TIMEOUT = 3.0  # above the service's own bound on readiness (storage.ping_timeout_seconds)
RETRYABLE = (httpx.TransportError, httpx.TimeoutException)


class History:
    """Everything the clients did and saw, in wall-clock time (the database's clock too)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def log(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t": time.time(), **fields}
        self.records.append(rec)
        return rec

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]

    def dump(self, path: Path) -> None:
        with open(path, "w") as f:
            for r in self.records:
                f.write(json.dumps(r, default=str) + "\n")


def plan_for(task_id: str) -> str:
    """What the worker and QA decide for a task: fixed by its id, so the checker knows too."""
    h = int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) % 100
    return "fail" if h < 12 else "reject-once" if h < 27 else "accept"


def expected_final(task_id: str) -> str:
    return "failed" if plan_for(task_id) == "fail" else "completed"


def envelope(name: str, event_id: str, data: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": f"dats.{name}",
        "source": source,
        "id": event_id,
        "datacontenttype": "application/json",
        "subject": data.get("task_id"),
        "data": data,
    }


async def declare_topology(amqp_url: str) -> None:
    """The exchanges, the workers' durable queue and the catch-all tap, before any replica
    starts, so nothing published is unroutable to them."""
    conn = await aio_pika.connect(amqp_url, timeout=10)
    async with conn:
        ch = await conn.channel()
        for name in EXCHANGES:
            await ch.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        ready = await ch.declare_queue(READY_QUEUE, durable=True)
        await ready.bind("task.events", routing_key="task.ready.*")
        tap = await ch.declare_queue(TAP_QUEUE, durable=True)
        for name in EXCHANGES:
            await tap.bind(name, routing_key="#")


class Load:
    def __init__(
        self, urls: Callable[[], list[str]], amqp_url: str, history: History, *, rate: float
    ) -> None:
        self.urls = urls
        self.amqp_url = amqp_url
        self.h = history
        self.rate = rate
        self.projects = ["p1", "p2", "p3"]
        self.stop_submitting = asyncio.Event()
        self.acked: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._counter = itertools.count()
        self._inflight_handlers: set[asyncio.Task[None]] = set()
        self.feed_last: int | None = None
        self._feed_connects = 0

    def start(self) -> None:
        for coro in (self._submitter(), self._worker(0), self._worker(1), self._poller(), self._prober()):
            self.tasks.append(asyncio.create_task(coro))
        self._follower_task = asyncio.create_task(self._follower())
        self.tasks.append(self._follower_task)

    async def stop(self) -> None:
        self.stop_submitting.set()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=70)
        for t in [*self.tasks, *self._inflight, *self._inflight_handlers]:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks = []

    async def submissions_done(self) -> None:
        """Stop submitting and wait for the last ones (each retries up to a minute)."""
        self.stop_submitting.set()
        while self._inflight:
            await asyncio.wait(set(self._inflight), timeout=70)

    def restart_follower(self) -> None:
        """A fresh connection (to the next replica) resuming from the last id seen: the end of
        the run does this when the feed went silent while events were still due."""
        self._follower_task.cancel()
        self._follower_task = asyncio.create_task(self._follower())
        self.tasks.append(self._follower_task)
        self.h.log("feed-stall")

    # -- submissions and cancellations -----------------------------------------------------
    async def _submitter(self) -> None:
        # Room for every request that can be in flight at once: a refused local connection
        # would be the client's failure, not the service's.
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=5, limits=limits) as client:
            while not self.stop_submitting.is_set():
                n = next(self._counter)
                t = asyncio.create_task(self._submit(client, n))
                self._inflight.add(t)
                t.add_done_callback(self._inflight.discard)
                await asyncio.sleep(1 / self.rate)
            while self._inflight:  # their retries still need the client
                await asyncio.wait(set(self._inflight), timeout=70)

    async def _submit(self, client: httpx.AsyncClient, n: int) -> None:
        key = f"chaos-{n}-{uuid.uuid4().hex[:8]}"
        body = {"description": f"chaos task {n}", "project_id": self.projects[n % len(self.projects)]}
        give_up = time.time() + 60
        for attempt in itertools.count():
            urls = self.urls()
            url = urls[(n + attempt) % len(urls)]
            t0 = time.time()
            try:
                r = await client.post(f"{url}/api/v1/tasks", json=body, headers={"Idempotency-Key": key})
            except RETRYABLE as exc:
                self.h.log("submit", key=key, url=url, t0=t0, error=type(exc).__name__)
            else:
                tid = r.json().get("task_id") if r.status_code == 201 else None
                self.h.log("submit", key=key, url=url, t0=t0, status=r.status_code, task=tid)
                if r.status_code == 201:
                    self.acked.append(tid)
                    if random.random() < 0.08:
                        await self._cancel(client, tid)
                    return
                if r.status_code < 500:
                    return
            if time.time() > give_up:
                self.h.log("gave-up", key=key)
                return
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))

    async def _cancel(self, client: httpx.AsyncClient, tid: str) -> None:
        """One attempt, racing the worker: its answer decides how the checker judges the task."""
        await asyncio.sleep(random.random() * 0.6)
        url = random.choice(self.urls())
        t0 = time.time()
        try:
            r = await client.post(f"{url}/api/v1/tasks/{tid}/cancel", json={"reason": "chaos"})
        except RETRYABLE as exc:
            self.h.log("cancel", task=tid, t0=t0, error=type(exc).__name__)
        else:
            self.h.log("cancel", task=tid, t0=t0, status=r.status_code)

    # -- workers and QA ----------------------------------------------------------------------
    async def _worker(self, n: int) -> None:
        """A robust connection whose consumer is re-registered after every reconnect (an
        ``async for`` over a queue iterator ends for good when its channel closes)."""
        while True:
            try:
                conn = await aio_pika.connect_robust(self.amqp_url, reconnect_interval=1)
                async with conn:
                    ch = await conn.channel(publisher_confirms=True)
                    await ch.set_qos(prefetch_count=8)
                    queue = await ch.declare_queue(READY_QUEUE, durable=True)

                    async def on_message(
                        msg: aio_pika.abc.AbstractIncomingMessage, ch: aio_pika.abc.AbstractChannel = ch
                    ) -> None:
                        t = asyncio.create_task(self._handle(ch, msg, n))
                        self._inflight_handlers.add(t)
                        t.add_done_callback(self._inflight_handlers.discard)

                    await queue.consume(on_message)
                    await asyncio.Future()  # until cancelled; reconnects happen underneath
            except Exception as exc:
                self.h.log("worker-restart", worker=n, error=type(exc).__name__)
                await asyncio.sleep(1)

    async def _handle(
        self, ch: aio_pika.abc.AbstractChannel, msg: aio_pika.abc.AbstractIncomingMessage, n: int
    ) -> None:
        data = orjson.loads(msg.body)["data"]
        tid, attempt = str(data["task_id"]), int(data["attempt"])
        plan = plan_for(tid)
        self.h.log("ready", task=tid, attempt=attempt, worker=n, plan=plan, redelivered=msg.redelivered)
        await asyncio.sleep(random.uniform(0.02, 0.3))
        out: list[tuple[str, str, dict[str, Any]]] = []
        if plan == "fail":
            out.append(
                (
                    "task.events",
                    "task.failed",
                    envelope(
                        "task.failed",
                        f"fail-{tid}-{attempt}",
                        {"task_id": tid, "error": "chaos", "retryable": False},
                        "/worker",
                    ),
                )
            )
        else:
            art = {"id": f"art-{tid}-{attempt}", "type": "code", "path": "x.py"}
            out.append(
                (
                    "task.events",
                    "task.output.created",
                    envelope(
                        "task.output.created",
                        f"out-{tid}-{attempt}",
                        {"task_id": tid, "artifacts": [art]},
                        "/worker",
                    ),
                )
            )
            if plan == "reject-once" and attempt <= 1:
                out.append(
                    (
                        "qa.events",
                        "task.rejected",
                        envelope(
                            "task.rejected",
                            f"rej-{tid}-{attempt}",
                            {"task_id": tid, "reason": "chaos"},
                            "/qa",
                        ),
                    )
                )
            else:
                out.append(
                    (
                        "qa.events",
                        "task.validated",
                        envelope(
                            "task.validated",
                            f"ok-{tid}-{attempt}",
                            {"task_id": tid, "confidence": 0.9},
                            "/qa",
                        ),
                    )
                )
        for exchange, key, env in out:
            while True:
                try:
                    ex = await ch.get_exchange(exchange, ensure=False)
                    await ex.publish(
                        aio_pika.Message(
                            orjson.dumps(env),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=env["id"],
                        ),
                        routing_key=key,
                        mandatory=False,
                        timeout=10,
                    )
                    break
                except Exception as exc:  # broker away: the robust channel comes back
                    self.h.log("publish-retry", event=env["id"], error=type(exc).__name__)
                    await asyncio.sleep(0.5)
            self.h.log("sent", event=env["id"], type=key, task=tid, attempt=attempt)
        with contextlib.suppress(Exception):  # a lost ack means a redelivery: same ids again
            await msg.ack()

    async def send_poison(self, tag: str) -> list[str]:
        """Messages the service must dead-letter: not JSON, an unknown task, no task id."""
        ids = [f"poison-{tag}-{i}" for i in range(3)]
        bodies = [
            b"not json at all",
            orjson.dumps(envelope("task.validated", ids[1], {"task_id": str(uuid.uuid4())}, "/qa")),
            orjson.dumps(envelope("task.validated", ids[2], {"confidence": 0.5}, "/qa")),
        ]
        conn = await aio_pika.connect(self.amqp_url, timeout=10)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            ex = await ch.get_exchange("task.events", ensure=False)
            for pid, body in zip(ids, bodies, strict=True):
                await ex.publish(aio_pika.Message(body, message_id=pid), routing_key="task.validated")
                self.h.log("poison", event=pid)
        return ids

    # -- observers -----------------------------------------------------------------------------
    async def _follower(self) -> None:
        """The event feed, from the start, reconnecting (to the next replica) with Last-Event-ID."""
        for n in itertools.count(self._feed_connects):
            self._feed_connects += 1
            last = self.feed_last
            urls = self.urls()
            url = urls[n % len(urls)]
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            params = {} if last is not None else {"after": "0"}
            try:
                async with (
                    httpx.AsyncClient(timeout=httpx.Timeout(5, read=8)) as c,
                    c.stream("GET", f"{url}/api/v1/events", params=params, headers=headers) as r,
                ):
                    if r.status_code != 200:
                        raise httpx.HTTPStatusError("feed", request=r.request, response=r)
                    self.h.log("feed-connect", url=url, last=last)
                    fields: dict[str, str] = {}
                    async for line in r.aiter_lines():
                        if line:
                            k, _, v = line.partition(":")
                            fields[k] = v.lstrip(" ")
                            continue
                        if "id" in fields:
                            seq = int(fields["id"])
                            env = orjson.loads(fields.get("data", "{}"))
                            self.h.log("feed", seq=seq, type=fields.get("event"), subject=env.get("subject"))
                            self.feed_last = seq
                        fields = {}
            except (httpx.HTTPError, ValueError) as exc:
                self.h.log("feed-error", url=url, error=type(exc).__name__)
            await asyncio.sleep(0.2)

    async def _poller(self) -> None:
        async with httpx.AsyncClient(timeout=3) as c:
            while True:
                await asyncio.sleep(0.3)
                if not self.acked:
                    continue
                tid = random.choice(self.acked[-200:])
                url = random.choice(self.urls())
                with contextlib.suppress(*RETRYABLE):
                    r = await c.get(f"{url}/api/v1/tasks/{tid}")
                    if r.status_code == 200:
                        self.h.log("status", task=tid, status=r.json()["status"])

    async def _prober(self) -> None:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as c:
            while True:
                for i, url in enumerate(self.urls()):
                    t0 = time.time()
                    for probe in ("ready", "live"):
                        try:
                            code = (await c.get(f"{url}/api/v1/health/{probe}")).status_code
                        except RETRYABLE as exc:
                            code = type(exc).__name__
                        self.h.log(f"probe-{probe}", replica=i, t0=t0, status=code)
                await asyncio.sleep(0.25)
