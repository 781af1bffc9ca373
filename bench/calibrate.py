"""How fast this machine is, by the issue's yardstick: the bare reference app's inserts/s
(``bench/reference_app.py``) next to the issue's figure for it (about 7,000/s).

``python -m bench`` measures the reference in its own run with warm-up and repeats;
``python -m bench.events`` calls :func:`machine_factor` once before its sweep.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx

from bench.loadgen import WrkLoadGenerator, find_wrk
from bench.reference_app import TABLE_DDL
from bench.server import ROOT, ServerConfig, ServerProcess, scratch_database, server_env
from bench.workloads import Context, RefInsert

REFERENCE_APP = "bench.reference_app:app"


@contextlib.asynccontextmanager
async def reference_database(pg_url: str, config: ServerConfig) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A scratch database with the reference app's table: (its URL, the app's environment)."""
    async with scratch_database(pg_url) as db_url:
        dsn = db_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(TABLE_DDL)
        finally:
            await conn.close()
        yield db_url, {**server_env(db_url, config), "REFERENCE_DSN": dsn}


async def machine_factor(pg_url: str, workers: int, seconds: float = 8.0) -> tuple[float, float] | None:
    """(the reference's inserts/s here, that / the issue's), or None without wrk."""
    wrk = await find_wrk()
    if wrk is None:
        return None
    config = ServerConfig(workers, "memory://", reference=True)
    async with reference_database(pg_url, config) as (_, env):
        log = ROOT / "bench" / "results" / f"server-{workers}w-reference.log"
        server = ServerProcess(config, env, log, asgi_app=REFERENCE_APP)
        await server.start()
        try:
            with tempfile.TemporaryDirectory(prefix="orch-calibrate-") as tmp:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
                    ctx = Context(server.base_url, client, Path(tmp), projects=1000, seed_tasks=0)
                    spec = await RefInsert().prepare(ctx)
                gen = WrkLoadGenerator(wrk)
                for length in (2.0, seconds):  # a warm-up, then the run that counts
                    r = await gen.run(
                        spec, server.base_url, connections=64, seconds=length, workdir=Path(tmp)
                    )
        finally:
            await server.stop()
    issue_rps = (RefInsert.reference_figures or (7000.0, None))[0]
    return r.rps, r.rps / issue_rps
