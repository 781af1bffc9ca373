"""The workloads. Add one by subclassing :class:`Workload` and decorating it with ``@register``.

A workload prepares whatever it needs on the running server (through :class:`Context`) and
returns the :class:`LoadSpec` the load generator replays; the harness does the warm-up, the
timed runs and the report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from bench.loadgen import LoadSpec
from bench.server import BenchError

API = "/api/v1"


@dataclass(frozen=True)
class Target:
    """An issue's target for a workload: p95 at most ``p95_ms`` and at least ``min_rps``."""

    p95_ms: float
    min_rps: float

    def describe(self) -> str:
        return f"p95<={self.p95_ms:g}ms, >={self.min_rps:,.0f}/s"

    def misses(self, p95_ms: float, rps: float, errors: int) -> list[str]:
        out = []
        if p95_ms > self.p95_ms:
            out.append("p95")
        if rps < self.min_rps:
            out.append("req/s")
        if errors:
            out.append("errors")
        return out


@dataclass
class Context:
    """What a workload may use: the server's URL, a client, options and shared state."""

    base_url: str
    client: httpx.AsyncClient
    workdir: Path
    projects: int
    seed_tasks: int
    state: dict[str, Any] = field(default_factory=dict)


class Workload:
    name: ClassVar[str]
    summary: ClassVar[str]
    target: ClassVar[Target | None] = None
    # The reference workload (bench/reference_app.py) the target is scaled by, if any.
    yardstick: ClassVar[str | None] = None
    # Served by the reference app, not the service; (req/s, p95 ms or None) the issue read
    # for it on its own machine.
    reference_figures: ClassVar[tuple[float, float | None] | None] = None

    async def prepare(self, ctx: Context) -> LoadSpec:
        raise NotImplementedError


REGISTRY: dict[str, type[Workload]] = {}
DEFAULT_WORKLOADS = ("submit", "status")
REFERENCE_WORKLOADS = ("ref-insert", "ref-select")


def register(cls: type[Workload]) -> type[Workload]:
    REGISTRY[cls.name] = cls
    return cls


def submit_body(seq: str, project: int | str) -> str:
    return f'{{"description": "bench task {seq}: add a unit test", "project_id": "bench-{project}"}}'


async def create_tasks(ctx: Context, count: int, *, concurrency: int = 32) -> list[str]:
    """Submit ``count`` tasks over the API (spread over the projects) and return their ids."""
    ids: list[str] = []
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            r = await ctx.client.post(
                f"{API}/tasks",
                content=submit_body(f"seed-{n}", n % ctx.projects),
                headers={"content-type": "application/json"},
            )
            if r.status_code != 201:
                raise BenchError(f"seeding: POST {API}/tasks answered {r.status_code}: {r.text[:300]}")
            ids.append(r.json()["task_id"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


@register
class Submit(Workload):
    name = "submit"
    summary = "POST /api/v1/tasks, bodies spread over many project ids"
    target = Target(p95_ms=40, min_rps=2500)
    yardstick = "ref-insert"

    async def prepare(self, ctx: Context) -> LoadSpec:
        r = await ctx.client.post(
            f"{API}/tasks", content=submit_body("probe", 0), headers={"content-type": "application/json"}
        )
        if r.status_code != 201:
            raise BenchError(f"submit probe: POST {API}/tasks answered {r.status_code}: {r.text[:300]}")
        return LoadSpec(
            method="POST",
            paths=(f"{API}/tasks",),
            body=submit_body("{seq}", "{project}"),
            projects=ctx.projects,
            headers={"Content-Type": "application/json"},
        )


@register
class Status(Workload):
    name = "status"
    summary = "GET /api/v1/tasks/{id}, random ids among tasks created at warm-up"
    target = Target(p95_ms=20, min_rps=5000)
    yardstick = "ref-select"

    async def prepare(self, ctx: Context) -> LoadSpec:
        ids: list[str] = ctx.state.get("task_ids") or []
        if len(ids) < ctx.seed_tasks:
            ids = ids + await create_tasks(ctx, ctx.seed_tasks - len(ids))
            ctx.state["task_ids"] = ids
        r = await ctx.client.get(f"{API}/tasks/{ids[0]}")
        if r.status_code != 200:
            raise BenchError(f"status probe: GET {API}/tasks/{ids[0]} answered {r.status_code}")
        return LoadSpec(method="GET", paths=tuple(f"{API}/tasks/{i}" for i in ids))


@register
class Health(Workload):
    name = "health"
    summary = "GET /api/v1/health: no database; the HTTP stack's own ceiling (no target)"

    async def prepare(self, ctx: Context) -> LoadSpec:
        return LoadSpec(method="GET", paths=(f"{API}/health",))


# -- the reference app (bench/reference_app.py), measured in the same run ------------------
@register
class RefInsert(Workload):
    name = "ref-insert"
    summary = "reference app: POST /items, one INSERT (the issue: about 7,000/s, p95 14 ms)"
    reference_figures = (7000.0, 14.0)

    async def prepare(self, ctx: Context) -> LoadSpec:
        r = await ctx.client.post("/items", content=submit_body("probe", 0))
        if r.status_code != 201:
            raise BenchError(f"reference probe: POST /items answered {r.status_code}")
        return LoadSpec(
            method="POST", paths=("/items",), body=submit_body("{seq}", "{project}"), projects=ctx.projects
        )


@register
class RefSelect(Workload):
    name = "ref-select"
    summary = "reference app: GET /items/{id}, one primary-key SELECT (the issue: about 9,300/s)"
    reference_figures = (9300.0, None)

    async def prepare(self, ctx: Context) -> LoadSpec:
        ids: list[str] = []
        for n in range(ctx.seed_tasks):
            r = await ctx.client.post("/items", content=submit_body(f"seed-{n}", n % ctx.projects))
            if r.status_code != 201:
                raise BenchError(f"reference seeding: POST /items answered {r.status_code}")
            ids.append(r.json()["id"])
        return LoadSpec(method="GET", paths=tuple(f"/items/{i}" for i in ids))
