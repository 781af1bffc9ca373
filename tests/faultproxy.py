"""A small TCP fault proxy for tests: 127.0.0.1:<port> → a target server (PostgreSQL,
RabbitMQ), which can pass, blackhole, refuse or reset connections.

* ``blackhole()``: every connection stays open and nothing passes, in either direction, as
  on a network that drops packets without a reset. ``drop=False`` holds the bytes and
  delivers them on ``heal()`` (the connections resume); ``drop=True`` discards them (the
  connections never answer again, as after a long outage: only the service's own timeouts
  can notice, since this machine's kernel acknowledges every byte the proxy reads).
* ``refuse()``: new connections are closed at once; open ones are reset.
* ``reset()``: every open connection is closed now (new ones still pass).
* ``heal()``: pass again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # accepted so far
        self._open = asyncio.Event()
        self._open.set()
        self._drop = False
        self._refusing = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def blackhole(self, *, drop: bool = False) -> None:
        self._drop = drop
        self._open.clear()

    def refuse(self) -> None:
        self._refusing = True
        self.reset()

    def reset(self) -> None:
        for w in list(self._writers):
            _abort(w)
        self._writers.clear()

    def heal(self) -> None:
        self._refusing = False
        self._drop = False
        self._open.set()

    async def close(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        self.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            _abort(writer)
            return
        self.connections += 1
        self._writers.add(writer)
        await self._open.wait()  # a blackholed connect: accepted, then nothing
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        self._writers.add(up_writer)
        dead: list[bool] = []  # bytes were dropped: the connection's stream is broken for good
        await asyncio.gather(
            self._pipe(reader, up_writer, dead), self._pipe(up_reader, writer, dead), return_exceptions=True
        )
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dead: list[bool]
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not self._open.is_set():
                    if self._drop:
                        dead.append(True)
                    else:
                        await self._open.wait()  # hold the bytes, keep the connection
                if dead:
                    continue  # read and discard: the sender's kernel sees every byte taken
                writer.write(data)
                await writer.drain()
            await self._open.wait()  # nor does a close get through
        finally:
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    # A reset (RST), not a graceful FIN: a proxy that drops a connection says nothing more.
    with contextlib.suppress(Exception):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(Exception):
        writer.transport.abort()
