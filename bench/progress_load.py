"""Heartbeat load for ``python -m bench.events`` (issue 18): ``task.progress`` at a fixed
rate beside the lifecycle workload (``--progress-rate``), and the rate the service absorbs
progress at full speed (the ``progress`` workload).

Progress goes to tasks kept running for the purpose (long tasks heartbeating while others
complete: every report is kept, an UPDATE, not an "ignored"), over the HTTP ingress with the
memory:// bus or published to RabbitMQ with ``--broker amqp``, as the lifecycle's events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
import orjson

from bench.events import API, Sender, envelope, lifecycle, submit_many, wait_running
from bench.server import ServerProcess

HEARTBEATERS = 100
BATCH = {"content-type": "application/cloudevents-batch+json"}


def _at(base: datetime, i: int) -> str:
    # Increasing times: each report is later than the one before it (the latest wins).
    return (base + timedelta(microseconds=i)).isoformat().replace("+00:00", "Z")


async def heartbeating_tasks(base_url: str, n: int = HEARTBEATERS, running_before: int = 0) -> list[str]:
    """``n`` tasks, in their own projects, running (nobody completes them)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        ids = await submit_many(client, n, projects=n)
        await wait_running(client, running_before + n)
    return ids


class ProgressLoad:
    """Sends ``rate`` task.progress a second, round-robin over ``task_ids``, until closed."""

    def __init__(
        self,
        base_url: str,
        amqp_url: str | None,
        prefix: str,
        task_ids: list[str],
        rate: float,
        *,
        control: bool = False,
        batch: int = 1,
    ):
        self.base_url = base_url
        self.control = control
        self.batch = batch
        self.amqp_url = amqp_url
        self.prefix = prefix
        self.task_ids = task_ids
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.drained = 0  # control: messages that came back through the broker
        self._started = 0.0
        self._elapsed = 0.0

    async def __aenter__(self) -> ProgressLoad:
        self._runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner

    def stats(self) -> dict[str, Any]:
        return {
            "target_per_s": self.rate,
            "sent": self.sent,
            "failed": self.failed,
            "achieved_per_s": round(self.sent / self._elapsed, 1) if self._elapsed else 0.0,
            **({"drained": self.drained} if self.control else {}),
        }

    async def _run(self) -> None:
        tick = 0.01  # 100 batches a second
        connector = aiohttp.TCPConnector(limit=64)
        async with (
            aiohttp.ClientSession(base_url=self.base_url, connector=connector) as session,
            _Heartbeats(session, self.amqp_url, self.prefix, control=self.control) as sender,
        ):
            base = datetime.now(UTC)
            self._started = time.perf_counter()
            pending: set[asyncio.Task[None]] = set()
            chunk: list[dict[str, Any]] = []
            i = 0
            while not self._stop.is_set():
                due = int((time.perf_counter() - self._started) * self.rate)
                while i < due and len(pending) < 256:
                    tid = self.task_ids[i % len(self.task_ids)]
                    data = {
                        "task_id": tid,
                        "progress": (i % 100) / 100,
                        "message": f"step {i}",
                        "worker_id": "bench",
                    }
                    env = envelope("task.progress", data, "/bench-worker")
                    env["time"] = _at(base, i)
                    i += 1
                    if sender.direct:
                        # A publish without confirms is a write to the socket: no task each
                        # (this generator shares the two cores with the service it measures).
                        await self._send(sender, env)
                        continue
                    if self.batch > 1:
                        # A worker running many tasks: what is due goes in one request.
                        chunk.append(env)
                        if len(chunk) < self.batch and i < due:
                            continue
                        job = asyncio.create_task(self._send_batch(session, chunk))
                        chunk = []
                    else:
                        job = asyncio.create_task(self._send(sender, env))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), tick)
            self._elapsed = time.perf_counter() - self._started
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.drained = sender.drained

    async def _send_batch(self, session: aiohttp.ClientSession, envs: list[dict[str, Any]]) -> None:
        try:
            async with session.post(f"{API}/events", data=orjson.dumps(envs), headers=BATCH) as r:
                if r.status != 200:
                    raise RuntimeError(f"ingress answered {r.status}")
                await r.read()
            self.sent += len(envs)
        except Exception:  # a refused or failed send is counted, not fatal to the benchmark
            self.failed += len(envs)

    async def _send(self, sender: _Heartbeats, env: dict[str, Any]) -> None:
        try:
            await sender.send(env)
            self.sent += 1
        except Exception:  # a refused or failed send is counted, not fatal to the benchmark
            self.failed += 1


class _Heartbeats:
    """How a worker sends heartbeats: over the ingress, or to RabbitMQ without publisher
    confirms and not persistent (a lost heartbeat is replaced by the next one), through the
    AMQP channel itself: aio_pika's message and exchange objects cost the generator, on the
    service's cores, more CPU than the publish.

    ``control``: the same messages through the same broker to a queue the service does not
    read, drained here (no acks): what the broker and this generator alone take from the
    two cores the lifecycle runs on."""

    def __init__(
        self, session: aiohttp.ClientSession, amqp_url: str | None, prefix: str, *, control: bool = False
    ) -> None:
        self.http = Sender(session, None, prefix)
        self.amqp_url = amqp_url
        self.prefix = prefix
        self.control = control
        self.exchange = prefix + ("bench.noise" if control else "task.events")
        self.drained = 0
        self._conn: Any = None
        self._channel: Any = None

    @property
    def direct(self) -> bool:
        return self._channel is not None

    async def __aenter__(self) -> _Heartbeats:
        if self.amqp_url:
            import aio_pika

            self._conn = await aio_pika.connect(self.amqp_url)
            channel = await self._conn.channel(publisher_confirms=False)
            if self.control:
                await self._drain_noise(channel)
            else:
                await channel.get_exchange(self.exchange)  # it exists
            self._channel = await channel.get_underlay_channel()
        return self

    async def _drain_noise(self, channel: Any) -> None:
        import aio_pika

        topic = aio_pika.ExchangeType.TOPIC
        exchange = await channel.declare_exchange(self.exchange, topic, auto_delete=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        underlay = await channel.get_underlay_channel()

        async def drained(_message: Any) -> None:
            self.drained += 1

        await underlay.basic_consume(queue.name, drained, no_ack=True)

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def send(self, env: dict[str, Any]) -> None:
        if self._channel is None:
            await self.http.send("task.events", env)
            return
        body = orjson.dumps(env)
        await self._channel.basic_publish(body, exchange=self.exchange, routing_key="task.progress")


async def progress_throughput(
    base_url: str,
    amqp_url: str | None,
    prefix: str,
    task_ids: list[str],
    n: int,
    concurrency: int = 64,
    batch: int = 1,
) -> dict[str, Any]:
    """``n`` reports as fast as they go in; events/s until every task shows its last report.
    ``batch`` > 1 (HTTP): that many reports of distinct tasks a request
    (``application/cloudevents-batch+json``), as a worker running many tasks may send them."""
    per_task = n // len(task_ids)
    base = datetime.now(UTC)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with (
        aiohttp.ClientSession(base_url=base_url, connector=connector) as session,
        Sender(session, amqp_url, prefix) as sender,
    ):
        reports = [(tid, k * len(task_ids) + j) for k in range(per_task) for j, tid in enumerate(task_ids)]
        it = iter(reports)
        start = time.perf_counter()

        def report(tid: str, i: int) -> dict[str, Any]:
            env = envelope("task.progress", {"task_id": tid, "message": f"report {i}"}, "/bench-worker")
            env["time"] = _at(base, i)
            return env

        async def push() -> None:
            if batch > 1 and not amqp_url:
                while chunk := [report(tid, i) for tid, i in itertools.islice(it, batch)]:
                    async with session.post(f"{API}/events", data=orjson.dumps(chunk), headers=BATCH) as r:
                        if r.status != 200:
                            raise RuntimeError(f"ingress answered {r.status}: {(await r.text())[:200]}")
                return
            for tid, i in it:
                await sender.send("task.events", report(tid, i))

        pushers = concurrency if batch == 1 else max(4, concurrency // batch)  # ~as many in flight
        await asyncio.gather(*(push() for _ in range(pushers)))
        sent = time.perf_counter() - start
        last = {tid: f"report {(per_task - 1) * len(task_ids) + j}" for j, tid in enumerate(task_ids)}
        deadline = time.perf_counter() + 120
        for tid, message in last.items():
            while True:
                async with session.get(f"{API}/tasks/{tid}") as r:
                    progress = orjson.loads(await r.read()).get("progress") or {}
                if progress.get("message") == message:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"task {tid} never showed its last report")
                await asyncio.sleep(0.01)
        applied = time.perf_counter() - start
    total = per_task * len(task_ids)
    return {
        "reports": total,
        "sent_per_s": round(total / sent, 1),
        "applied_per_s": round(total / applied, 1),
    }


def _amqp(args: argparse.Namespace) -> str | None:
    return str(args.amqp_url) if args.broker == "amqp" else None


async def with_and_without_progress(
    server: ServerProcess, args: argparse.Namespace, prefix: str
) -> dict[str, Any]:
    """Each lifecycle level ``--repeat`` times without, then with, the progress load; medians."""
    beating = await heartbeating_tasks(server.base_url)
    out: dict[str, Any] = {
        "progress_rate": args.progress_rate,
        "heartbeating_tasks": len(beating),
        "levels": [],
    }
    control = args.progress_control and _amqp(args) is not None
    kinds = ["without", "control", "with"] if control else ["without", "with"]
    for concurrency in args.concurrency:
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for _ in range(args.repeat):
            plain: dict[str, Any] = {}
            for kind in kinds:
                cpu = server.cpu_seconds()
                load = None
                if kind != "without":
                    load = ProgressLoad(
                        server.base_url,
                        _amqp(args),
                        prefix,
                        beating,
                        args.progress_rate,
                        control=kind == "control",
                        batch=1 if _amqp(args) else args.progress_batch,
                    )
                async with load or contextlib.nullcontext():
                    got = await lifecycle(
                        server, args.tasks, _amqp(args), prefix, concurrency, also_running=len(beating)
                    )
                if load is not None:
                    got["progress_load"] = load.stats()
                got["server_cpu_s"] = round(server.cpu_seconds() - cpu, 2)
                if load is None:
                    plain = got
                else:
                    # The service's extra CPU, per heartbeat sent beside this run.
                    extra = got["server_cpu_s"] - plain["server_cpu_s"]
                    got["server_cpu_us_per_heartbeat"] = round(1e6 * extra / max(1, load.sent), 1)
                runs[kind].append(got)
                print(f"lifecycle ({args.broker}) {kind} progress: {json.dumps(got)}", flush=True)
        level: dict[str, Any] = {"concurrency": concurrency, **{k: _medians(v) for k, v in runs.items()}}
        w, p = level["without"], level["with"]
        level["events_per_s_change_pct"] = _change(p["events_per_s"], w["events_per_s"])
        level["read_p50_change_pct"] = _change(p["read_p50_ms"], w["read_p50_ms"])
        control_text = ""
        if control:
            c = level["control"]
            level["control_events_per_s_change_pct"] = _change(c["events_per_s"], w["events_per_s"])
            # The service's own share: with its heartbeats against the same load elsewhere.
            level["service_events_per_s_change_pct"] = _change(p["events_per_s"], c["events_per_s"])
            control_text = (
                f"; the same load to a queue the service does not read: {c['events_per_s']} "
                f"({level['control_events_per_s_change_pct']:+}%), so the service's own share is "
                f"{level['service_events_per_s_change_pct']:+}%"
            )
        out["levels"].append(level)
        print(
            f"lifecycle ({args.broker}, {concurrency} workers, medians of {args.repeat}): "
            f"{w['events_per_s']} events/s without progress, {p['events_per_s']} with "
            f"{p.get('progress_achieved_per_s')} progress/s ({level['events_per_s_change_pct']:+}%)"
            f"{control_text}; "
            f"task.validated → reads completed p50 {w['read_p50_ms']} → {p['read_p50_ms']} ms, "
            f"p95 {w['read_p95_ms']} → {p['read_p95_ms']} ms",
            flush=True,
        )
    return out


def _change(value: float, base: float) -> float:
    return round(100 * (value / base - 1), 1)


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    reads = [r["validated_to_task_reads_completed_ms"] for r in runs]
    got: dict[str, Any] = {
        "runs": len(runs),
        "events_per_s": round(statistics.median(r["events_per_s"] for r in runs), 1),
        "read_p50_ms": round(statistics.median(x[50] for x in reads), 1),
        "read_p95_ms": round(statistics.median(x[95] for x in reads), 1),
    }
    loads = [r["progress_load"]["achieved_per_s"] for r in runs if "progress_load" in r]
    got["server_cpu_s"] = round(statistics.median(r["server_cpu_s"] for r in runs), 2)
    if loads:
        got["server_cpu_us_per_heartbeat"] = round(
            statistics.median(r["server_cpu_us_per_heartbeat"] for r in runs), 1
        )
        got["progress_achieved_per_s"] = round(statistics.median(loads), 1)
        got["progress_failed"] = sum(r["progress_load"]["failed"] for r in runs)
    return got


async def progress_workload(server: ServerProcess, args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        page = (await client.get(f"{API}/tasks", params={"status": "running", "limit": 1})).json()
    beating = await heartbeating_tasks(server.base_url, running_before=page["total"])
    # The service's processes alone (not PostgreSQL, the broker or this load generator), less
    # what they spend idle (background loops) for as long: the cost of a heartbeat that
    # carries over to another machine.
    await server.quiesce()
    cpu, t0 = server.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(3.0)
    idle_cores = (server.cpu_seconds() - cpu) / (time.perf_counter() - t0)
    cpu, t0 = server.cpu_seconds(), time.perf_counter()
    out = await progress_throughput(
        server.base_url, _amqp(args), prefix, beating, args.progress_reports, batch=args.progress_batch
    )
    out["batch"] = args.progress_batch
    busy = server.cpu_seconds() - cpu - idle_cores * (time.perf_counter() - t0)
    out["server_idle_cores"] = round(idle_cores, 3)
    out["server_cpu_us_per_report"] = round(1e6 * busy / out["reports"], 1)
    return out
