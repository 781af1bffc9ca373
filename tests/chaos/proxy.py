"""A TCP fault proxy between the service replicas and one server.

Modes (each set by the runner, for a while):

* pass: bytes flow both ways.
* reset-all: every open connection is aborted now (an RST to the client, a close to the server).
* refuse: the listening socket is closed for N s (new connections get ECONNREFUSED); open
  connections are reset first, as when the server goes away.
* latency: every chunk from the server reaches the client N ms late (order kept), so each
  round trip takes N ms more, for a while.
* blackhole: for N s nothing passes on any connection, open or new (bytes are read and
  dropped, so the sender's kernel sees them acknowledged, as behind a dead link). When it
  ends, new connections pass again, but the connections that lived through it stay
  *half-open*: the server's side is closed (its keepalive gave up and it rolled back, releasing
  its locks), the client's side stays open and silent until the client gives up on it. This is
  what a real half-open connection is, and the harshest honest choice: resuming the old
  connections would hide a client that waits forever; resetting them would tell the client,
  which a dead link never does. A client must find out by its own timeouts (note: TCP
  keepalive probes are answered by this proxy's kernel, so only application-level timeouts
  notice; see docs/developing/tests.md, "Fault injection").

It runs on an event loop of its own (a thread), so a busy load generator does not slow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any

from tests.process import free_port

CHUNK = 65536


async def _quiet(coro: Coroutine[Any, Any, None]) -> None:
    """A pump ends on any socket error: the connection is torn down as a whole."""
    with contextlib.suppress(ConnectionError, OSError):
        await coro


class _Conn:
    def __init__(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.client_r, self.client_w = client_r, client_w
        self.up_r: asyncio.StreamReader | None = None
        self.up_w: asyncio.StreamWriter | None = None
        self.blackholed = False  # lived through a blackhole: half-open for good
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for w in (self.client_w, self.up_w):
            if w is not None:
                w.transport.abort()

    def close_upstream(self) -> None:
        if self.up_w is not None:
            self.up_w.transport.abort()


class FaultProxy:
    def __init__(self, name: str, target_port: int) -> None:
        self.name = name
        self.target_port = target_port
        self.port = free_port()
        self.conns: set[_Conn] = set()
        self.latency = 0.0
        self.blackhole_active = False
        self._server: asyncio.Server | None = None

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conn = _Conn(r, w)
        self.conns.add(conn)
        try:
            if self.blackhole_active:
                conn.blackholed = True
            else:
                try:
                    conn.up_r, conn.up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
                except OSError:
                    conn.abort()  # the server is down: the client sees its connection reset
                    return
            down_q: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
            conn.tasks = [
                asyncio.create_task(_quiet(self._client_to_server(conn))),
                asyncio.create_task(_quiet(self._server_to_queue(conn, down_q))),
                asyncio.create_task(_quiet(self._queue_to_client(conn, down_q))),
            ]
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in conn.tasks:
                t.cancel()
            conn.abort()
            self.conns.discard(conn)

    async def _client_to_server(self, conn: _Conn) -> None:
        while data := await conn.client_r.read(CHUNK):
            if conn.blackholed or self.blackhole_active or conn.up_w is None:
                continue  # dropped on the floor
            conn.up_w.write(data)
            await conn.up_w.drain()

    async def _server_to_queue(self, conn: _Conn, q: asyncio.Queue[tuple[float, bytes | None]]) -> None:
        if conn.up_r is None:
            await asyncio.Event().wait()  # born in a blackhole: never an upstream
            return
        while True:
            try:
                data = await conn.up_r.read(CHUNK)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if conn.blackholed:
                    await asyncio.Event().wait()  # half-open: the client is not told
                await q.put((0.0, None))
                return
            if conn.blackholed or self.blackhole_active:
                continue
            await q.put((time.monotonic() + self.latency, data))

    async def _queue_to_client(self, conn: _Conn, q: asyncio.Queue[tuple[float, bytes | None]]) -> None:
        while True:
            at, data = await q.get()
            if data is None:
                return
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if conn.blackholed:
                continue
            conn.client_w.write(data)
            await conn.client_w.drain()

    # -- faults (called on the proxy's loop) -------------------------------------------------
    async def reset_all(self) -> int:
        n = len(self.conns)
        for c in list(self.conns):
            c.abort()
        return n

    async def refuse(self, seconds: float) -> None:
        assert self._server is not None
        self._server.close()  # the listening socket goes; open connections are reset below
        await self.reset_all()
        await asyncio.sleep(seconds)
        await self.listen()

    async def add_latency(self, seconds: float, delay_ms: float) -> None:
        self.latency = delay_ms / 1000
        await asyncio.sleep(seconds)
        self.latency = 0.0

    async def blackhole(self, seconds: float) -> None:
        self.blackhole_active = True
        for c in self.conns:
            c.blackholed = True
        await asyncio.sleep(seconds)
        self.blackhole_active = False
        for c in list(self.conns):
            if c.blackholed:
                c.close_upstream()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.reset_all()


class ProxyThread:
    """Both proxies on one event loop in a thread; ``run()`` awaits a fault from another loop."""

    def __init__(self, targets: dict[str, int]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chaos-proxy", daemon=True)
        self.proxies = {name: FaultProxy(name, port) for name, port in targets.items()}

    def start(self) -> None:
        self.thread.start()
        for p in self.proxies.values():
            asyncio.run_coroutine_threadsafe(p.listen(), self.loop).result(10)

    def __getitem__(self, name: str) -> FaultProxy:
        return self.proxies[name]

    async def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        for p in self.proxies.values():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(p.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
