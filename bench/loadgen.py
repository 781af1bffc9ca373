"""Load generators: wrk (preferred, C) and a clearly labelled Python/httpx fallback.

A workload describes its traffic as a :class:`LoadSpec`; a generator runs it for a fixed
time at a fixed number of connections and returns a :class:`RunResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

WRK_SCRIPT = Path(__file__).with_name("wrk_script.lua")
RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class LoadSpec:
    """The traffic of a workload.

    ``paths``: one is picked at random per request. ``body``: a template in which
    ``{project}`` becomes a random number below ``projects`` and ``{seq}`` a unique sequence.
    """

    method: str
    paths: tuple[str, ...]
    body: str | None = None
    projects: int = 1
    headers: dict[str, str] = field(default_factory=dict)

    def render_body(self, seq: str, rng: random.Random) -> str | None:
        if self.body is None:
            return None
        project = str(rng.randrange(self.projects))
        return self.body.replace("{project}", project).replace("{seq}", seq)


@dataclass
class RunResult:
    loadgen: str
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non_2xx: int
    statuses: dict[str, int]
    socket_errors: int
    server_cpu_cores: float | None = None
    machine_cpu_cores: float | None = None
    db_connections: int | None = None
    note: str = ""

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """Server CPU per answered request, background work included: robust to a busy machine."""
        if self.server_cpu_cores is None or not self.rps:
            return None
        return 1000 * self.server_cpu_cores / self.rps

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "server_cpu_ms_per_request": self.server_cpu_ms_per_request}


class LoadGenerator(Protocol):
    name: str

    async def run(
        self, spec: LoadSpec, base_url: str, *, connections: int, seconds: float, workdir: Path
    ) -> RunResult: ...


# -- wrk ------------------------------------------------------------------------------------
def _lua_string(value: str) -> str:
    if not value.isascii():
        raise ValueError("wrk scripts here take ASCII strings only")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class WrkLoadGenerator:
    name = "wrk"

    def __init__(self, executable: str, threads: int = 2) -> None:
        self.executable = executable
        self.threads = threads

    def script(self, spec: LoadSpec, workdir: Path) -> Path:
        paths_file = "nil"
        if len(spec.paths) > 1:
            pf = workdir / f"paths-{os.getpid()}-{id(spec)}.txt"
            pf.write_text("\n".join(spec.paths) + "\n")
            paths_file = _lua_string(str(pf))
        headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items())
        config = (
            "BENCH = {\n"
            f"  method = {_lua_string(spec.method)},\n"
            f"  path = {_lua_string(spec.paths[0])},\n"
            f"  paths_file = {paths_file},\n"
            f"  body = {_lua_string(spec.body) if spec.body is not None else 'nil'},\n"
            f"  projects = {int(spec.projects)},\n"
            f"  headers = {{{headers}}},\n"
            "}\n"
        )
        path = workdir / f"wrk-{spec.method.lower()}-{id(spec)}.lua"
        path.write_text(config + WRK_SCRIPT.read_text())
        return path

    async def run(
        self, spec: LoadSpec, base_url: str, *, connections: int, seconds: float, workdir: Path
    ) -> RunResult:
        script = self.script(spec, workdir)
        cmd = [
            self.executable,
            f"-t{min(self.threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base_url,
        ]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out_b, _ = await proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        out = out_b.decode(errors="replace")
        line = next((ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
        data = json.loads(line[len(RESULT_PREFIX) :])
        secs = data["duration_us"] / 1e6
        sock = data["socket_errors"]
        return RunResult(
            loadgen=self.name,
            seconds=secs,
            requests=int(data["requests"]),
            rps=data["requests"] / secs if secs else 0.0,
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p95_ms=data["p95_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            mean_ms=data["mean_us"] / 1000,
            non_2xx=int(data["non_2xx"]),
            statuses={k: int(v) for k, v in data["statuses"].items()},
            socket_errors=int(sock["connect"] + sock["read"] + sock["write"] + sock["timeout"]),
        )


async def find_wrk(*, install: bool = True) -> str | None:
    """wrk on PATH; else, as root, ``apt-get install -y wrk``; else None."""
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = ["apt-get", "install", "-y", "-q", "wrk"]
    for step in (install_cmd, ["apt-get", "update", "-q"], install_cmd):
        if shutil.which("wrk"):
            break
        print(f"bench: wrk is missing; running `{' '.join(step)}`", flush=True)
        proc = await asyncio.create_subprocess_exec(
            *step, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
    return shutil.which("wrk")


# -- Python fallback ------------------------------------------------------------------------
def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class PythonLoadGenerator:
    """httpx in this process. Much slower than wrk: its figures are bounded by the client."""

    name = "python-httpx (fallback, client-bound)"

    async def run(
        self, spec: LoadSpec, base_url: str, *, connections: int, seconds: float, workdir: Path
    ) -> RunResult:
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        socket_errors = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        headers = {**spec.headers}
        if spec.body is not None:
            headers.setdefault("content-type", "application/json")
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(n: int, client: httpx.AsyncClient) -> None:
            nonlocal socket_errors
            rng = random.Random(n)
            count = 0
            while time.perf_counter() < deadline:
                count += 1
                path = spec.paths[0] if len(spec.paths) == 1 else rng.choice(spec.paths)
                body = spec.render_body(f"{n}-{count}", rng)
                t0 = time.perf_counter()
                try:
                    r = await client.request(spec.method, path, content=body, headers=headers)
                except httpx.HTTPError:
                    socket_errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if not 200 <= r.status_code <= 299:
                    statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10.0) as client:
            await asyncio.gather(*(worker(n, client) for n in range(connections)))
        elapsed = time.perf_counter() - start
        latencies.sort()
        ms = [v * 1000 for v in latencies]
        return RunResult(
            loadgen=self.name,
            seconds=elapsed,
            requests=len(ms),
            rps=len(ms) / elapsed if elapsed else 0.0,
            p50_ms=percentile(ms, 50),
            p90_ms=percentile(ms, 90),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            max_ms=ms[-1] if ms else 0.0,
            mean_ms=statistics.fmean(ms) if ms else 0.0,
            non_2xx=sum(statuses.values()),
            statuses=statuses,
            socket_errors=socket_errors,
        )


def median_result(runs: list[RunResult]) -> RunResult:
    """Per-figure medians of repeated runs (each figure on its own)."""
    if len(runs) == 1:
        return runs[0]

    def med(attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in runs))

    statuses: dict[str, int] = {}
    for r in runs:
        for code, n in r.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    cpus = [r.server_cpu_cores for r in runs if r.server_cpu_cores is not None]
    machine = [r.machine_cpu_cores for r in runs if r.machine_cpu_cores is not None]
    return RunResult(
        loadgen=runs[0].loadgen,
        seconds=med("seconds"),
        requests=round(med("requests")),
        rps=med("rps"),
        p50_ms=med("p50_ms"),
        p90_ms=med("p90_ms"),
        p95_ms=med("p95_ms"),
        p99_ms=med("p99_ms"),
        max_ms=max(r.max_ms for r in runs),
        mean_ms=med("mean_ms"),
        non_2xx=sum(r.non_2xx for r in runs),
        statuses=statuses,
        socket_errors=sum(r.socket_errors for r in runs),
        server_cpu_cores=float(statistics.median(cpus)) if cpus else None,
        machine_cpu_cores=float(statistics.median(machine)) if machine else None,
        db_connections=max((r.db_connections or 0 for r in runs), default=None),
        note=f"median of {len(runs)} runs (errors summed)",
    )
