"""The fault-injection run: private servers, proxies, two replicas, load, faults, checker.

``python -m tests.chaos [--short]``; prints the table and exits 1 when an invariant breaks or
a recovery bound is missed (2 when the harness itself could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

import aio_pika
import asyncpg
import orjson

from tests.chaos import checker, faults
from tests.chaos.cluster import Cluster, service_env
from tests.chaos.load import TAP_QUEUE, History, Load, declare_topology
from tests.chaos.proxy import ProxyThread
from tests.chaos.servers import Servers

LIMIT = 3
RECOVERY_WAIT = 40.0  # after a fault, wait this long at most for every recovery figure
SETTLE = 2.0
DLQ = "orchestration-events.dlq"


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _db_value(dsn: str, sql: str, *args: object) -> object:
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(dsn, timeout=3)
        try:
            return await conn.fetchval(sql, *args, timeout=3)
        finally:
            await conn.close()
    return None


async def _wait_recovered(h: History, dsn: str, end: float, n_replicas: int) -> None:
    deadline = time.time() + RECOVERY_WAIT
    while time.time() < deadline:
        ready = {r["replica"] for r in h.of("probe-ready") if r["t0"] >= end and r["status"] == 200}
        accepted = any(r["t0"] >= end and r.get("status") == 201 for r in h.of("submit"))
        done = await _db_value(
            dsn,
            "SELECT max(created_at) FROM task_history"
            " WHERE to_status = 'completed' AND from_status <> 'completed'",
        )
        completed = done is not None and done.timestamp() >= end  # type: ignore[attr-defined]
        if len(ready) == n_replicas and accepted and completed:
            return
        await asyncio.sleep(0.5)


async def _drain_queue(url: str, name: str) -> list[str]:
    """Every message left in a queue: its id (the AMQP message id, else the CloudEvent's)."""
    ids: list[str] = []
    conn = await aio_pika.connect(url, timeout=10)
    async with conn:
        ch = await conn.channel()
        q = await ch.get_queue(name, ensure=False)
        while (msg := await q.get(no_ack=True, fail=False)) is not None:
            mid = msg.message_id
            if mid is None:
                with contextlib.suppress(Exception):
                    mid = orjson.loads(msg.body).get("id")
            ids.append(str(mid))
    return ids


async def _drain(dsn: str, h: History, load: Load, deadline: float) -> None:
    """Until every task is final, every outbox row published and the follower has the last.
    A follower silent (heartbeats only) for 5 s while that is all that is missing reconnects
    once: recorded as a feed stall."""
    while time.time() < deadline:
        open_tasks = await _db_value(
            dsn, "SELECT count(*) FROM tasks WHERE status NOT IN ('completed','failed','cancelled')"
        )
        unpublished = await _db_value(
            dsn,
            "SELECT count(*) FROM outbox WHERE seq IS NULL"
            " OR seq > (SELECT coalesce(max(published_seq), 0) FROM relay_progress)",
        )
        last = await _db_value(dsn, "SELECT coalesce(max(seq), 0) FROM outbox")
        followed = max((r["seq"] for r in h.of("feed")), default=0)
        behind = last is not None and followed < last  # type: ignore[operator]
        if open_tasks == 0 and unpublished == 0 and not behind:
            return
        quiet = time.time() - max((r["t"] for r in h.of("feed")), default=0)
        if behind and quiet > 5 and not h.of("feed-stall"):
            load.restart_follower()
        await asyncio.sleep(1)


async def run(short: bool, log_dir: Path, only: list[str] | None = None) -> int:
    schedule = faults.SHORT if short else faults.FULL
    if only:
        schedule = [f for f in schedule if any(o.lower() in f.name.lower() for o in only)]
    started = time.monotonic()
    servers = Servers()
    proxies: ProxyThread | None = None
    cluster: Cluster | None = None
    load: Load | None = None
    h = History()
    try:
        await asyncio.get_running_loop().run_in_executor(None, servers.start)
        print(
            f"servers up in {time.monotonic() - started:.1f}s "
            f"(PostgreSQL :{servers.pg.port}, RabbitMQ {servers.rabbit.node})",
            flush=True,
        )
        await declare_topology(servers.rabbit.url)
        proxies = ProxyThread({"pg": servers.pg.port, "amqp": servers.rabbit.port})
        proxies.start()
        env = service_env(
            f"postgresql+asyncpg://postgres@127.0.0.1:{proxies['pg'].port}/postgres",
            f"amqp://guest:guest@127.0.0.1:{proxies['amqp'].port}/",
            limit=LIMIT,
        )
        env["ORCH_EVENTS__SSE_HEARTBEAT_SECONDS"] = "2"
        cluster = Cluster(env, log_dir)
        await cluster.start()
        dsn = _dsn(servers.pg.url)
        load = Load(lambda: cluster.urls, servers.rabbit.url, h, rate=8 if short else 10)  # type: ignore[union-attr]
        load.start()
        poison = await load.send_poison("start")
        await asyncio.sleep(3 if short else 5)
        e = faults.Env(servers, proxies, cluster)
        windows: list[checker.FaultWindow] = []
        for i, fault in enumerate(schedule):
            t0 = time.time()
            h.log("fault-start", name=fault.name)
            await fault.run(e)
            t1 = time.time()
            h.log("fault-end", name=fault.name)
            windows.append(checker.FaultWindow(fault.name, t0, t1, fault.replica, fault.outage))
            print(f"[{time.monotonic() - started:6.1f}s] {fault.name} ({t1 - t0:.1f}s)", flush=True)
            await _wait_recovered(h, dsn, t1, len(cluster.replicas))
            if i == len(schedule) // 2:
                poison += await load.send_poison("middle")
            await asyncio.sleep(SETTLE)
        await load.submissions_done()
        await _drain(dsn, h, load, time.time() + (45 if short else 60))
        await load.stop()
        tap = await _drain_queue(servers.rabbit.url, TAP_QUEUE)
        dlq = await _drain_queue(servers.rabbit.url, DLQ)
        snap = await checker.Snapshot.read(dsn)
        verdict = checker.check(h, snap, limit=LIMIT, tap_ids=tap, dlq_ids=dlq, poison=poison, faults=windows)
        print(checker.table(verdict))
        failures = [k for k in checker.VIOLATIONS if verdict.counts.get(k)] + checker.recovery_failures(
            verdict, p95_goal=not short
        )
        print(f"\nwall time {time.monotonic() - started:.0f}s; history and replica logs in {log_dir}")
        if failures:
            print("FAILED: " + "; ".join(failures))
            return 1
        print("PASSED: every invariant held and every recovery was within its bound")
        return 0
    finally:
        if load is not None:
            await load.stop()
        h.dump(log_dir / "history.jsonl")
        if cluster is not None:
            cluster.close()
        if proxies is not None:
            proxies.close()
        servers.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a handful of faults (about 2 minutes)")
    parser.add_argument("--logs", type=Path, default=Path("var/chaos"), help="where the history and logs go")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only the faults whose name contains TEXT (repeatable), e.g. --only blackhole",
    )
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    # The workers' client reconnects through every broker fault: its story is in the history.
    for noisy in ("aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM like Ctrl-C: the finally blocks remove the servers and replicas.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return asyncio.run(run(args.short, args.logs, args.only))
    except KeyboardInterrupt:
        print("interrupted; servers and replicas removed", file=sys.stderr)
        return 130
