"""The system under test: a throwaway PostgreSQL database and the service as a real subprocess.

Everything here cleans up after itself: :func:`scratch_database` drops its database and
:class:`ServerProcess` stops its server (SIGTERM, then SIGKILL of its own session as a last
resort) also when the benchmark fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "orchestration-service"
UVICORN = Path(sys.executable).parent / "uvicorn"
HEALTH_PATH = "/api/v1/health"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A set-up step failed; the message says which and why."""


@dataclass(frozen=True)
class ServerConfig:
    """One configuration of the service to measure."""

    workers: int
    broker_url: str
    events_prefix: str = ""
    reference: bool = False  # the bare reference app (bench/reference_app.py), not the service
    auth: bool = False  # API keys on: every request carries an admin key for all projects

    @property
    def broker(self) -> str:
        return "memory" if self.broker_url.startswith("memory://") else "amqp"

    @property
    def label(self) -> str:
        auth = "+auth" if self.auth else ""
        return f"{self.workers}w/{'reference' if self.reference else self.broker}{auth}"


# -- database ------------------------------------------------------------------------------
def _with_database(url: str, database: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, parts.netloc, "/" + database, parts.query, ""))


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[str]:
    """Create ``orch_bench_<random>``; yield the service's URL for it; drop it afterwards."""
    name = f"orch_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(
        _with_database(admin_url, urlsplit(admin_url).path.lstrip("/") or "postgres")
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _with_database(admin_url, name, scheme="postgresql+asyncpg")
    finally:
        # Shielded so that a second Ctrl-C does not leave the database behind.
        await asyncio.shield(_drop_database(admin_url, name))


async def connection_count(admin_url: str, database: str) -> int | None:
    """Sessions open on ``database`` now (the server's pools keep theirs open after a run)."""
    try:
        conn = await asyncpg.connect(admin_url)
    except Exception:
        return None
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database))
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def server_env(database_url: str, config: ServerConfig) -> dict[str, str]:
    """The environment of the service: the caller's, less any ORCH_* of a developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        ORCH_DATABASE_URL=database_url,
        ORCH_BROKER_URL=config.broker_url,
        ORCH_LOG_LEVEL="WARNING",
        ORCH_LOG_FORMAT="console",
    )
    if config.events_prefix:
        env["ORCH_EVENTS__NAME_PREFIX"] = config.events_prefix
    if config.auth:
        env["ORCH_AUTH__ENABLED"] = "true"
    return env


async def _cli(env: dict[str, str], *args: str) -> str:
    """Run ``orchestration-service ARGS`` against the scratch database; its output."""
    proc = await asyncio.create_subprocess_exec(
        str(CLI), *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        what = " ".join(args[:2])
        raise BenchError(
            f"`orchestration-service {what}` failed ({proc.returncode}):\n{err.decode()}{out.decode()}"
        )
    return out.decode()


async def create_admin_key(env: dict[str, str]) -> str:
    """``orchestration-service keys create``: a key for every project."""
    return (
        await _cli(env, "keys", "create", "--name", "bench", "--scope", "admin", "--all-projects")
    ).strip()


async def migrate(env: dict[str, str]) -> None:
    await _cli(env, "db", "upgrade")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc helpers ---------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    return out


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes (those still alive)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy (not idle or waiting for I/O), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLK_TCK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def database_backends(database: str) -> list[int]:
    """The local PostgreSQL server processes serving connections to ``database``: their title
    names it (``postgres: user database 127.0.0.1(port) idle``)."""
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            title = _cmdline(int(entry))
            if title.startswith("postgres: ") and f" {database} " in title:
                pids.append(int(entry))
    return pids


def _open_log(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")


# -- the server ------------------------------------------------------------------------------
_ISSUE = re.compile(r"error|warning|critical|exception|too many", re.IGNORECASE)
_NOISE = ("Traceback (most recent call last)", "During handling of", "The above exception", "(Background on")


@dataclass
class StopResult:
    returncode: int | None
    clean: bool
    seconds: float
    note: str = ""


@dataclass
class ServerProcess:
    config: ServerConfig
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    # Another ASGI app to serve instead of the service ("module:attribute"): the reference.
    asgi_app: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_path(self) -> str:
        # The reference app has no health route: an unknown item answers 404 once it serves.
        return HEALTH_PATH if self.asgi_app is None else f"/items/{uuid.UUID(int=0)}"

    async def start(self, limit_s: float = 60.0) -> None:
        if self.asgi_app is None:
            argv = [str(CLI), "serve", "--no-migrate"]
        else:  # the service's own server settings (cli/__init__.py: serve)
            argv = [str(UVICORN), self.asgi_app, "--loop", "uvloop", "--http", "httptools"]
            argv += ["--log-level", "warning", "--no-access-log"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.config.workers)]
        with _open_log(self.log_path) as log:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                env=self.env,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
            )
        await self._wait_healthy(limit_s)
        if self.config.workers > 1:
            await self._wait_workers(limit_s)

    async def _wait_healthy(self, limit_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + limit_s
        last = "no answer"
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise BenchError(
                        f"the server exited with {self.proc.returncode} during start-up:\n{self.log_tail()}"
                    )
                try:
                    r = await client.get(self.health_path)
                    if r.status_code == (200 if self.asgi_app is None else 404):
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                await asyncio.sleep(0.2)
        raise BenchError(f"GET {self.health_path} did not answer 200 within {limit_s:.0f}s ({last})")

    async def _wait_workers(self, limit_s: float) -> None:
        """With several workers, the first answer may come from one of them: wait for all."""
        for _ in range(int(limit_s / 0.2)):
            if len(self.worker_pids()) >= self.config.workers:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # let the last one finish its lifespan start-up

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (the main one with a single worker)."""
        if self.config.workers == 1:
            return [self.pid]
        return [p for p in process_tree(self.pid)[1:] if "spawn_main" in _cmdline(p)]

    def cpu_seconds(self) -> float:
        return cpu_seconds(process_tree(self.pid))

    async def quiesce(
        self, *, idle_cores: float = 0.05, window: float = 0.5, limit_s: float = 300.0
    ) -> float | None:
        """Wait until the server's background work (routing, dispatch, outbox relay) has caught
        up; returns the seconds that took, or None if it was still busy after ``limit_s``."""
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            before = self.cpu_seconds()
            await asyncio.sleep(window)
            if (self.cpu_seconds() - before) / window < idle_cores:
                return time.monotonic() - start
        return None

    async def stop(self, limit_s: float = 45.0) -> StopResult:
        """SIGTERM, then wait; a server that does not exit in time is killed (not clean)."""
        if self.proc is None:
            return StopResult(None, False, 0.0, "never started")
        if self.proc.returncode is not None:
            return StopResult(self.proc.returncode, False, 0.0, "had already exited")
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), limit_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # its own session, started by us
            rc = await self.proc.wait()
            return StopResult(rc, False, time.monotonic() - start, f"no exit within {limit_s:.0f}s: killed")
        return StopResult(rc, rc == 0, time.monotonic() - start)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_issues(self) -> list[str]:
        """Warning and error lines of the server's output (not traceback frames), in order."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [
            line
            for line in text.splitlines()
            if line and not line[0].isspace() and _ISSUE.search(line) and not line.startswith(_NOISE)
        ]


def summarise_issues(lines: list[str], top: int = 6) -> list[tuple[int, str]]:
    """Distinct issues with their counts (numbers masked, so retries group together)."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for line in lines:
        key = re.sub(r"\d+(\.\d+)?", "N", line)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, line)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(n, first[key]) for key, n in ranked]


def broker_names() -> tuple[list[str], list[str]]:
    """The exchanges and queues the service declares (before its name prefix)."""
    from orchestration_service.config import RabbitMQSettings

    rmq = RabbitMQSettings()
    queues = [*rmq.queues, *(q + ".dlq" for q in rmq.queues), *(q + ".heartbeats" for q in rmq.queues)]
    return [*rmq.exchanges, "orchestration.dlx"], queues


async def delete_broker_objects(amqp_url: str, prefix: str) -> list[str]:
    """Best effort: remove the prefixed exchanges and queues that a run declared."""
    if not prefix:
        return []
    import aio_pika

    exchanges, queues = broker_names()
    removed: list[str] = []
    try:
        conn = await aio_pika.connect(amqp_url, timeout=5)
    except Exception:
        return removed
    async with conn:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                try:
                    channel = await conn.channel()
                    if kind == "queue":
                        await channel.get_queue(prefix + name, ensure=True)  # passive: exists?
                        await channel.queue_delete(prefix + name)
                    else:
                        await channel.get_exchange(prefix + name, ensure=True)
                        await channel.exchange_delete(prefix + name)
                    removed.append(f"{kind} {prefix}{name}")
                    await channel.close()
                except Exception:
                    continue
    return removed
