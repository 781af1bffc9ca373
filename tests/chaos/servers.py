"""Private PostgreSQL and RabbitMQ for the fault-injection suite.

Never the machine's shared servers (5432, 5672): a throwaway cluster and node of our own,
in a temporary folder, on free ports, removed at the end (``close()``; the runner calls it
from ``finally`` and on SIGINT/SIGTERM). Both can be restarted or stopped as faults.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.process import free_port

PG_BIN = Path(os.environ.get("ORCH_CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBIT_BIN = Path(os.environ.get("ORCH_CHAOS_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))


class MissingServer(RuntimeError):
    """initdb or rabbitmq-server is not installed here."""


def _as(user: str, *cmd: str) -> list[str]:
    """Run as ``user`` when we are root (initdb and rabbitmq refuse root); as is otherwise."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *cmd]
    return list(cmd)


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        if not (PG_BIN / "initdb").exists():
            raise MissingServer(f"no initdb in {PG_BIN}")
        self.root = root / "pg"
        self.root.mkdir()
        _chown(self.root, "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            _as(
                "postgres", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), *args
            ),
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        subprocess.run(
            _as("postgres", str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
        # fsync off: a process crash (-m immediate) keeps every committed transaction (the WAL
        # is in the page cache); only a machine crash would not, and we do not simulate one.
        conf = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.root}'\nmax_connections = 300\n"
            "fsync = off\nfull_page_writes = off\nshared_buffers = 64MB\n"
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(conf)
        self._ctl("start", "-w", "-t", "60")
        self.started = True

    def restart(self, mode: str) -> None:
        """``fast`` (clean shutdown) or ``immediate`` (its crash: recovery from the WAL)."""
        self._ctl("restart", "-m", mode, "-w", "-t", "60")

    def close(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._ctl("stop", "-m", "immediate", "-w", "-t", "30", timeout=40)
            self.started = False


class PrivateRabbit:
    def __init__(self, root: Path) -> None:
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise MissingServer(f"no rabbitmq-server in {RABBIT_BIN}")
        self.root = root / "rabbit"
        self.root.mkdir()
        _chown(self.root, "rabbitmq")
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"chaos-{secrets.token_hex(4)}@localhost"
        (self.root / "rabbitmq.conf").write_text(
            # Our own listener only: the machine's /etc/rabbitmq/rabbitmq.conf pins 5672.
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
            "vm_memory_high_watermark.absolute = 512MB\ndisk_free_limit.absolute = 50MB\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        # Loopback only, as the machine's own rabbitmq-env.conf does (minus its node name).
        (self.root / "rabbitmq-env.conf").write_text(
            'ERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
        )
        for name in ("rabbitmq.conf", "enabled_plugins", "rabbitmq-env.conf"):
            _chown(self.root / name, "rabbitmq")
        self.env = {
            **os.environ,
            "HOME": str(self.root),  # its own Erlang cookie, shared by rabbitmqctl below
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            _as("rabbitmq", str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args),
            env=self.env,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        log = open(self.root / "server.out", "ab")  # noqa: SIM115 - kept open while it runs
        self.proc = subprocess.Popen(
            _as("rabbitmq", str(RABBIT_BIN / "rabbitmq-server")),
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.ctl("wait", "--timeout", "60", str(self.root / "pid"), timeout=90)
        self._wait_port()

    def _wait_port(self, timeout: float = 60) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"RabbitMQ node {self.node} does not listen on {self.port}")

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self._wait_port()

    def restart(self) -> None:
        """A real restart of the node (the Erlang VM stops and starts again)."""
        self.ctl("stop", str(self.root / "pid"), timeout=90)
        if self.proc is not None:
            self.proc.wait(30)
        self.start()

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.ctl("stop", str(self.root / "pid"), timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(10)
        self.proc = None


class Servers:
    """Both servers in one temporary folder, removed by ``close()``."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-chaos-"))
        os.chmod(self.tmp, 0o755)
        self.pg = PrivatePostgres(self.tmp)
        self.rabbit = PrivateRabbit(self.tmp)

    def start(self) -> None:
        self.pg.start()
        self.rabbit.start()

    def close(self) -> None:
        try:
            self.pg.close()
            self.rabbit.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
