"""GET /workers and GET /queues (and /failures) with 1,000 workers seen and 100,000 tasks
stored, on PostgreSQL (``python -m bench.fleet [--tasks N] [--workers N] [--samples N]``).

A scratch database is migrated and filled straight through COPY (the API would take minutes
to accept as many): tasks over 20 projects and the four tiers, most finished, a few thousand
pending, running and validating; every dispatched task has the attempt row of one of the
workers (completed, failed, rejected or still open). Then the service runs as a real process
and each route is timed over HTTP, sequentially (p50, p95, max in milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson

from bench.server import ROOT, ServerConfig, ServerProcess, migrate, scratch_database, server_env

TIERS = ("tiny", "small", "large", "frontier")


def pct(xs: list[float], p: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def seed(dsn: str, tasks: int, workers: int) -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    task_rows, attempt_rows = [], []
    # In flight and waiting: a few thousand; the rest finished.
    plan = ["pending"] * 2000 + ["running"] * 1000 + ["validating"] * 500
    for i in range(tasks):
        status = plan[i] if i < len(plan) else rng.choice(["completed"] * 8 + ["failed", "cancelled"])
        created = now - timedelta(seconds=tasks - i)
        tier = TIERS[i % 4]
        tid = uuid.uuid4()
        finished = status in ("completed", "failed", "cancelled")
        error = (
            orjson.dumps(
                {"reason": rng.choice(["timeout", "worker failed", "rejected: no tests"]), "detail": "x"}
            ).decode()
            if status == "failed"
            else None
        )
        task_rows.append(
            (
                tid,
                f"proj-{i % 20}",
                f"Generated task {i}",
                "normal",
                1,
                status,
                "{}",
                1,
                3,
                600,
                0,
                created,
                created,
                tier,
                created + timedelta(seconds=30) if finished else None,
                error,
            )
        )
        if status != "pending":
            outcome = {
                "completed": "completed",
                "failed": rng.choice(["failed", "rejected"]),
                "cancelled": None,
            }.get(status)
            worker = f"worker-{rng.randrange(workers):04d}"
            attempt_rows.append(
                (tid, 1, worker, f"proj-{i % 20}", tier, f"model-{tier}", created, created, outcome)
            )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "tasks",
            records=task_rows,
            columns=[
                "id",
                "project_id",
                "description",
                "priority",
                "priority_rank",
                "status",
                "options",
                "attempt",
                "max_attempts",
                "timeout_seconds",
                "depth",
                "created_at",
                "updated_at",
                "tier",
                "completed_at",
                "error",
            ],
        )
        await conn.copy_records_to_table(
            "worker_tasks",
            records=attempt_rows,
            columns=[
                "task_id",
                "attempt",
                "worker_id",
                "project_id",
                "tier",
                "model",
                "first_seen",
                "last_seen",
                "outcome",
            ],
        )
        await conn.copy_records_to_table(
            "workers",
            records=[
                (f"worker-{w:04d}", now - timedelta(days=1), now - timedelta(seconds=w))
                for w in range(workers)
            ],
            columns=["worker_id", "first_seen", "last_seen"],
        )
        await conn.execute("VACUUM ANALYZE")  # as autovacuum leaves a settled table
    finally:
        await conn.close()
    print(f"seeded {tasks:,} tasks, {len(attempt_rows):,} attempts, {workers:,} workers", flush=True)


async def time_route(client: httpx.AsyncClient, path: str, samples: int) -> list[float]:
    times = []
    for i in range(samples + 5):
        start = time.perf_counter()
        r = await client.get(path)
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
        if i >= 5:  # warm-up
            times.append((time.perf_counter() - start) * 1000)
    return times


async def run(args: argparse.Namespace) -> int:
    config = ServerConfig(workers=1, broker_url="memory://")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    async with scratch_database(args.pg_url) as db_url:
        env = server_env(db_url, config)
        await migrate(env)
        await seed(db_url.replace("postgresql+asyncpg://", "postgresql://"), args.tasks, args.workers)
        server = ServerProcess(config=config, env=env, log_path=results / "fleet-server.log")
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=60) as client:
                for path in (
                    "/workers",
                    "/workers?limit=500",
                    "/queues",
                    "/failures",
                    "/failures?reason=timeout&tier=small",
                ):
                    times = await time_route(client, path, args.samples)
                    print(
                        f"GET {path:38s} p50 {statistics.median(times):7.1f} ms  "
                        f"p95 {pct(times, 95):7.1f} ms  max {max(times):7.1f} ms  ({args.samples} samples)",
                        flush=True,
                    )
        finally:
            await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=1_000)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
