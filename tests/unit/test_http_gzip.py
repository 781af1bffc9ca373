"""``GZipWhenAccepted``: large answers are gzipped at the fastest level for clients that
accept gzip, small ones and other clients' stay plain."""

from __future__ import annotations

import gzip

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestration_service.http import GZipWhenAccepted

LARGE = orjson.dumps([{"id": i, "artifact_ids": [f"art-{i}"], "depth": i % 50} for i in range(3000)])


async def large(request: Request) -> Response:
    return Response(LARGE, media_type="application/json")


async def small(request: Request) -> Response:
    return Response(b'{"status": "pending"}', media_type="application/json")


def client() -> httpx.AsyncClient:
    app = GZipWhenAccepted(Starlette(routes=[Route("/large", large), Route("/small", small)]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def raw_get(c: httpx.AsyncClient, path: str, encoding: str) -> httpx.Response:
    # Streamed, so that httpx leaves the body as sent (it decodes gzip when read whole).
    async with c.stream("GET", path, headers={"accept-encoding": encoding}) as r:
        r._content = b"".join([chunk async for chunk in r.aiter_raw()])
        return r


async def test_large_answers_are_gzipped_at_the_fastest_level() -> None:
    async with client() as c:
        r = await raw_get(c, "/large", "gzip, deflate")
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.content) == LARGE
    assert len(r.content) < len(LARGE) // 3
    # The gzip header's XFL byte: 4 = "compressor used the fastest algorithm" (level 1),
    # 0 at the default levels (6 was used before: it cost three times the CPU).
    assert r.content[:2] == b"\x1f\x8b" and r.content[8] == 4


async def test_small_answers_and_other_clients_stay_plain() -> None:
    async with client() as c:
        tiny = await raw_get(c, "/small", "gzip")
        plain = await raw_get(c, "/large", "identity")
    assert "content-encoding" not in tiny.headers
    assert tiny.content == b'{"status": "pending"}'
    assert "content-encoding" not in plain.headers
    assert plain.content == LARGE
