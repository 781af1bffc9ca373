"""Two service replicas as processes (``orchestration-service serve --workers 1``), on the
private servers through the fault proxies. Started, killed, frozen and thawed by the runner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.process import BIN, free_port

EMPTY_CONFIG = Path(__file__).parent.parent / "empty-config.yaml"


def service_env(database_url: str, broker_url: str, *, limit: int) -> dict[str, str]:
    """Settings that make limits bind and recovery visible within a short run."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
        "ORCH_CONFIG": str(EMPTY_CONFIG),
        "ORCH_DATABASE_URL": database_url,
        "ORCH_BROKER_URL": broker_url,
        "ORCH_HOST": "127.0.0.1",
        "ORCH_LOG_FORMAT": "json",
        "ORCH_LOG_LEVEL": "WARNING",
        "ORCH_AUTH_ENABLED": "false",
        "ORCH_MAX_CONCURRENT_PER_PROJECT": str(limit),
        "ORCH_SHUTDOWN_GRACE_SECONDS": "5",
        "ORCH_TASK_MANAGEMENT__SWEEP_INTERVAL_SECONDS": "1",
        # Longer than any fault: a timeout retry would hide a lost event (the checker also
        # compares every event sent with the events processed).
        "ORCH_TASK_MANAGEMENT__TIMEOUT_DEFAULT_SECONDS": "180",
        "ORCH_EVENTS__RELAY_POLL_SECONDS": "0.5",
        "ORCH_EVENTS__RELAY_LEADER_CHECK_SECONDS": "2",
        "ORCH_EVENTS__RELAY_LEADER_TIMEOUT_SECONDS": "4",
        "ORCH_STORAGE__KEEPALIVE_IDLE_SECONDS": "2",
        "ORCH_STORAGE__KEEPALIVE_INTERVAL_SECONDS": "1",
        "ORCH_STORAGE__TCP_USER_TIMEOUT_SECONDS": "5",
        "ORCH_STORAGE__CONNECT_TIMEOUT_SECONDS": "3",
        "ORCH_OBSERVABILITY__METRICS_REFRESH_SECONDS": "30",
    }


class Replica:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "ORCH_PORT": str(self.port)}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOPped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, migrate: bool) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [str(BIN), "serve", "--workers", "1", *([] if migrate else ["--no-migrate"])],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def start(self, *, migrate: bool = False, timeout: float = 60) -> None:
        self.proc = self._spawn(migrate)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=1) as c:
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(f"{self.url}/api/v1/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; see {self.log_path}")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    async def kill(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        if self.stopped:
            self.signal(signal.SIGCONT)
            self.stopped = False
        proc = self.proc
        await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        self.proc = None

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def kill_now(self) -> None:
        """For cleanup from a signal handler or finally: no waiting on the loop."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.signal(signal.SIGCONT)
            with contextlib.suppress(Exception):
                self.proc.wait(10)
            self.proc = None


class Cluster:
    def __init__(self, env: dict[str, str], log_dir: Path, n: int = 2) -> None:
        self.replicas = [Replica(f"replica{i}", env, log_dir) for i in range(n)]

    async def start(self) -> None:
        await self.replicas[0].start(migrate=True)
        await asyncio.gather(*(r.start() for r in self.replicas[1:]))

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def close(self) -> None:
        for r in self.replicas:
            r.kill_now()
