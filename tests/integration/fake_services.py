"""Fake Agent and RAG services: real HTTP servers on 127.0.0.1 (uvicorn in a thread of its
own, with its own event loop), whose answers, delays and failures each test sets.

No HTTP library is mocked: the service under test talks to these over real sockets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# What a path answers: a JSON document (status 200), or a full Reply, or a function of the
# request body returning either.
Answer = Any


@dataclass
class Reply:
    json: Any = None
    status: int = 200
    raw: bytes | None = None  # sent as is (malformed answers)
    delay: float = 0.0


@dataclass
class Call:
    path: str
    body: Any
    at: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Behaviour:
    answer: Answer | Callable[[Any], Answer]
    delay: float = 0.0


class FakeService:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._routes: dict[str, Behaviour] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- what the test sets ------------------------------------------------------------
    def answer(self, path: str, answer: Answer | Callable[[Any], Answer], *, delay: float = 0.0) -> None:
        self._routes[path] = Behaviour(answer, delay)

    def reset(self) -> None:
        with self._lock:
            self._routes = {"/health": Behaviour({"status": "healthy"})}
            self.calls = []
            self.in_flight = 0
            self.max_in_flight = 0

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    # -- the server --------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        raw = await request.body()
        body = orjson.loads(raw) if raw else None
        behaviour = self._routes.get(path)
        if path != "/health":
            with self._lock:
                self.calls.append(Call(path, body, time.monotonic(), dict(request.headers)))
        if behaviour is None:
            return Response(b'{"detail": "not found"}', 404, media_type="application/json")
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = behaviour.answer(body) if callable(behaviour.answer) else behaviour.answer
            reply = answer if isinstance(answer, Reply) else Reply(json=answer)
            delay = reply.delay or behaviour.delay
            if delay:
                await asyncio.sleep(delay)
        finally:
            with self._lock:
                self.in_flight -= 1
        content = reply.raw if reply.raw is not None else orjson.dumps(reply.json)
        return Response(content, reply.status, media_type="application/json")

    def start(self) -> None:
        self.reset()
        app = Starlette(routes=[Route("/api/v1/{path:path}", self._handle, methods=["GET", "POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, backlog=512)
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake {self.name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


def dead_url() -> str:
    """A base URL where nothing listens: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/api/v1"


@dataclass
class Agent:
    """Default answers of a healthy Agent Service, adjustable per test."""

    analysis: dict[str, Any] = field(
        default_factory=lambda: {
            "mode": "modify",
            "domain": "code-general",
            "needs_decomposition": False,
            "estimated_complexity": "medium",
            "qa_profile": "consensus",
        }
    )
    estimate: dict[str, Any] = field(
        default_factory=lambda: {
            "recommended_tier": "small",
            "estimated_tokens": 1200,
            "confidence": 0.8,
            "qa_profile": "consensus",
        }
    )

    # /decompose by the description asked about: each level of a tree has its own plan
    # (a subtask in one plan marked "is_atomic": false is asked about next). Unset: no answer.
    plans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def install(self, fake: FakeService, *, delay: float = 0.0) -> None:
        fake.answer("/analyze", self.analysis, delay=delay)
        fake.answer("/estimate", self.estimate, delay=delay)
        if self.plans:
            fake.answer("/decompose", self._decompose, delay=delay)

    def _decompose(self, body: Any) -> Answer:
        plan = self.plans.get(body.get("description"))
        if plan is None:
            return Reply({"detail": "no plan for this description"}, status=422)
        nested = any(s.get("is_atomic") is False for s in plan)
        # Like the real one, it reports no more levels than it was given.
        return {"subtasks": plan, "decomposition_depth": min(2 if nested else 1, body.get("max_depth", 1))}
