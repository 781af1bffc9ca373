"""Human review decisions (``python -m bench.reviews [--database sqlite|postgresql]``): the time
from a decision (``POST /api/v1/reviews/{id}/approve|reject|request-changes`` sent) to the task
reading its new state (``completed``, ``failed``, ``running``), p50/p95, per decision and overall.

The service runs as a real process (one worker, in-process bus) on a fresh database: SQLite
in a temporary file, or a scratch PostgreSQL database. ``--reviews`` tasks are first taken to
``awaiting_review`` over the HTTP ingress (worker output, then QA's ``review.requested``);
then each is decided in turn, the three decisions taking turns. The decision commits before
its answer, so the figure is one POST plus the first GET that sees the new state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.server import ServerConfig, ServerProcess, migrate, scratch_database, server_env

CE = {"content-type": "application/cloudevents+json"}
DECISIONS = (
    ("approve", {"comment": "fine"}, "completed"),
    ("reject", {"reason": "wrong"}, "failed"),
    ("request-changes", {"feedback": "handle n < 0"}, "running"),
)


def _event(name: str, data: dict[str, Any]) -> bytes:
    env = {"specversion": "1.0", "type": f"dats.{name}", "source": "/bench", "id": str(uuid.uuid4())}
    return json.dumps({**env, "subject": data["task_id"], "data": data}).encode()


async def _status(c: httpx.AsyncClient, task_id: str) -> str:
    return str((await c.get(f"/api/v1/tasks/{task_id}")).json()["status"])


async def _until(
    c: httpx.AsyncClient, task_id: str, status: str, *, every: float = 0.01, limit_s: float = 30.0
) -> None:
    deadline = time.monotonic() + limit_s
    while await _status(c, task_id) != status:
        if time.monotonic() > deadline:
            raise SystemExit(f"task {task_id} did not reach {status} within {limit_s:.0f}s")
        await asyncio.sleep(every)


async def to_review(c: httpx.AsyncClient, i: int) -> str:
    """A task taken to awaiting_review; its review id."""
    r = await c.post(
        "/api/v1/tasks", json={"description": f"bench task {i}", "project_id": f"bench-{i % 10}"}
    )
    tid = r.json()["task_id"]
    await _until(c, tid, "running")
    output = {"task_id": tid, "artifacts": [{"id": f"a{i}", "type": "code", "path": "x.py"}]}
    await c.post("/api/v1/events", content=_event("task.output.created", output), headers=CE)
    await c.post(
        "/api/v1/events", content=_event("review.requested", {"task_id": tid, "reason": "b"}), headers=CE
    )
    await _until(c, tid, "awaiting_review")
    page = (await c.get("/api/v1/reviews", params={"status": "open", "project_id": f"bench-{i % 10}"})).json()
    return str(next(item["review_id"] for item in page["items"] if item["task_id"] == tid))


@asynccontextmanager
async def fresh_database(database: str, pg_url: str, scratch: Path) -> AsyncIterator[str]:
    if database == "postgresql":
        async with scratch_database(pg_url) as url:
            yield url
        return
    yield f"sqlite+aiosqlite:///{scratch / 'bench.db'}"


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(args.database, args.pg_url, Path(tmp)) as url:
            config = ServerConfig(workers=1, broker_url="memory://")
            env = server_env(url, config)
            await migrate(env)
            server = ServerProcess(config, env, Path(tmp) / "server.log")
            await server.start()
            try:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
                    reviews = [(i, await to_review(c, i)) for i in range(args.reviews)]
                    await server.quiesce()
                    times: dict[str, list[float]] = {d[0]: [] for d in DECISIONS}
                    for i, rid in reviews:
                        action, body, expected = DECISIONS[i % len(DECISIONS)]
                        start = time.perf_counter()
                        r = await c.post(f"/api/v1/reviews/{rid}/{action}", json=body)
                        await _until(c, r.json()["task_id"], expected, every=0.001)
                        times[action].append(time.perf_counter() - start)
            finally:
                await server.stop()
    every = [t for ts in times.values() for t in ts]
    print(f"review decision -> task's new state, {args.database}, {len(every)} decisions")
    for name, ts in [*times.items(), ("all", every)]:
        print(
            f"  {name:16} n={len(ts):4}  p50 {_ms(ts, 0.5):6.1f} ms  p95 {_ms(ts, 0.95):6.1f} ms"
            f"  mean {statistics.fmean(ts) * 1000:6.1f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reviews", description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--reviews", type=int, default=150)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(measure(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
