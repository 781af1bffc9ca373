"""Run the service as a real process (``orchestration-service serve``) for tests that need
restarts, kills, or several replicas."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent / "orchestration-service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], *, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
            "ORCH_CONFIG": str(Path(__file__).parent / "empty-config.yaml"),
            "ORCH_HOST": "127.0.0.1",
            "ORCH_PORT": str(self.port),
            "ORCH_LOG_FORMAT": "json",
            "ORCH_LOG_LEVEL": "WARNING",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str, timeout: float = 30.0) -> ServerProcess:
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # Its own process group: with --workers N, killing the group takes the workers too
        # (a SIGKILLed supervisor would leave them running, orphaned, against the database).
        self.proc = subprocess.Popen(
            [str(BIN), "serve", *args],
            env=self.env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout}s; log: {self.log_path}")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._kill_group()  # anything the graceful stop left behind
        self._close_log()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._kill_group()
            self.proc.wait(10)
        self._kill_group()
        self._close_log()

    def _kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _close_log(self) -> None:
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
