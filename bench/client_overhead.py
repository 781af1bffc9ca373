"""The client library's overhead against raw httpx: 1,000 submissions each, one server.

    python -m bench.client_overhead [--n 1000] [--block 50] [--database-url URL]

Starts the service (SQLite in a temporary directory unless ``--database-url``), then
alternates blocks of submissions through ``orchestration_service.client.Client.submit``
and through a bare ``httpx.Client.post`` with the same body and an idempotency key, so
drift in the server (its database growing, the machine's load) falls on both alike. Prints
the wall-time ratio (library / raw) and the client-side CPU per submission of each.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

from orchestration_service.client import Client

CLI = Path(sys.executable).parent / "orchestration-service"
CONFIG = Path(__file__).resolve().parent.parent / "tests" / "empty-config.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {"ORCH_DATABASE_URL": database_url, "ORCH_PORT": str(port), "ORCH_HOST": "127.0.0.1",
            "ORCH_CONFIG": str(CONFIG), "ORCH_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = subprocess.Popen(
        [str(CLI), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="submissions through each side")
    parser.add_argument("--block", type=int, default=50, help="submissions per turn")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        port = free_port()
        proc = start(url, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with Client(base) as lib, httpx.Client(base_url=base + "/api/v1", timeout=30) as raw:

                def via_library(i: int) -> None:
                    lib.submit(f"Write function {i}", "bench-client")

                def via_httpx(i: int) -> None:
                    body = orjson.dumps({"description": f"Write function {i}", "project_id": "bench-raw"})
                    headers = {"content-type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
                    r = raw.post("/tasks", content=body, headers=headers)
                    r.raise_for_status()
                    r.json()

                for fn in (via_library, via_httpx):  # warm both (connections, imports, caches)
                    for i in range(20):
                        fn(i)
                wall = {"library": 0.0, "httpx": 0.0}
                cpu = {"library": 0.0, "httpx": 0.0}
                done = 0
                while done < args.n:
                    block = min(args.block, args.n - done)
                    for name, fn in (("library", via_library), ("httpx", via_httpx)):
                        w, c = time.perf_counter(), time.process_time()
                        for i in range(done, done + block):
                            fn(i)
                        wall[name] += time.perf_counter() - w
                        cpu[name] += time.process_time() - c
                    done += block
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"{args.n} submissions each, alternating blocks of {args.block}, {url.split(':')[0]}")
    for name in ("library", "httpx"):
        print(f"  {name:8} wall {wall[name]:.2f}s ({args.n / wall[name]:.0f}/s)  "
              f"client CPU {cpu[name] / args.n * 1e6:.0f} µs/submission")  # fmt: skip
    print(f"overhead ratio (library / raw httpx, wall): {wall['library'] / wall['httpx']:.3f}")
    print(f"client CPU ratio (library / raw httpx): {cpu['library'] / cpu['httpx']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
