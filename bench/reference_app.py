"""The yardstick the issue measures against: a bare Starlette + asyncpg app, one INSERT per
``POST /items`` and one primary-key SELECT per ``GET /items/{id}``, nothing else (no
validation, no outbox, no middleware).

``python -m bench`` serves it with the service's own server settings (uvicorn, uvloop,
httptools, as many workers) on a scratch database, in the same run as the service, and
scales the issue's targets by how fast this machine runs it: the issue's figures for it
(about 7,000 inserts/s at p95 14 ms, 9,300 selects/s) were read on a faster machine than
some of the ones the benchmark runs on. ``REFERENCE_DSN`` is the database (plain
``postgresql://``); the harness creates the table.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS reference_items"
    " (id uuid PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)
POOL: dict[str, Any] = {}


async def insert(request: Request) -> Response:
    item_id = uuid.uuid4()
    body = (await request.body()).decode()
    await POOL["pool"].execute("INSERT INTO reference_items (id, body) VALUES ($1, $2::jsonb)", item_id, body)
    return Response(orjson.dumps({"id": str(item_id)}), status_code=201, media_type="application/json")


async def select(request: Request) -> Response:
    row = await POOL["pool"].fetchrow(
        "SELECT id, body::text AS body, created_at FROM reference_items WHERE id = $1",
        uuid.UUID(request.path_params["item_id"]),
    )
    if row is None:
        return Response(status_code=404)
    doc = {"id": str(row["id"]), "body": orjson.loads(row["body"]), "created_at": row["created_at"]}
    return Response(orjson.dumps(doc), media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    POOL["pool"] = await asyncpg.create_pool(os.environ["REFERENCE_DSN"], min_size=10, max_size=10)
    try:
        yield
    finally:
        await POOL.pop("pool").close()


app = Starlette(
    routes=[Route("/items", insert, methods=["POST"]), Route("/items/{item_id}", select, methods=["GET"])],
    lifespan=lifespan,
)
