"""``python -m bench [WORKLOAD ...] [--duration S] [--workers N [N ...]] [--repeat N]``.

For each server configuration: a fresh PostgreSQL database, migrations, the service as a
subprocess on a free loopback port, each workload (prepare, warm-up, timed runs), SIGTERM
(checked for a clean exit), and the database dropped, also on failure or Ctrl-C. Then a
summary table with the issue targets and ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import profile as prof
from bench.calibrate import REFERENCE_APP, reference_database
from bench.loadgen import (
    LoadGenerator,
    LoadSpec,
    PythonLoadGenerator,
    RunResult,
    WrkLoadGenerator,
    find_wrk,
    median_result,
)
from bench.report import ConfigResult, WorkloadResult, calibration, calibration_table, table, write_json
from bench.server import (
    ServerConfig,
    ServerProcess,
    connection_count,
    create_admin_key,
    delete_broker_objects,
    machine_busy_seconds,
    migrate,
    scratch_database,
    server_env,
    summarise_issues,
)
from bench.workloads import DEFAULT_WORKLOADS, REGISTRY, Context, Workload

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the Orchestration Service over HTTP against PostgreSQL.",
        epilog="Workloads: "
        + "; ".join(
            f"{n}: {c.summary}" + (f" [{c.target.describe()}]" if c.target else "")
            for n, c in REGISTRY.items()
        ),
    )
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"default: {' '.join(DEFAULT_WORKLOADS)}")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of each timed run (default 15)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up per workload (default 5)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per workload; medians are reported")
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2],
        help="server worker processes (default 2: one per core); several values, several configurations",
    )
    p.add_argument(
        "--broker",
        choices=("memory", "amqp", "both"),
        default="memory",
        help="the event bus: memory:// (default), RabbitMQ, or both (each configuration twice)",
    )
    p.add_argument(
        "--auth",
        choices=("off", "on", "both"),
        default="off",
        help="API keys: off (default), on (each request sends an admin key), both (each configuration twice)",
    )
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument(
        "--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin connection"
    )
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--projects", type=int, default=1000, help="project ids the submissions spread over")
    p.add_argument("--seed-tasks", type=int, default=1000, help="tasks created for the status workload")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the timed runs, one more run per workload under py-spy (not in the figures)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the machine to be idle (< 0.25 cores busy); default 0",
    )
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="skip the reference app (bare Starlette + asyncpg) that scales the targets to this machine",
    )
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    args = p.parse_args(argv)
    args.workloads = args.workloads or list(DEFAULT_WORKLOADS)
    unknown = [w for w in args.workloads if w not in REGISTRY]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    # The reference app serves its own workloads; calibrating adds the yardsticks of the
    # service's workloads.
    args.reference_workloads = [w for w in args.workloads if REGISTRY[w].reference_figures]
    args.workloads = [w for w in args.workloads if not REGISTRY[w].reference_figures]
    if args.calibrate:
        for w in args.workloads:
            stick = REGISTRY[w].yardstick
            if stick and stick not in args.reference_workloads:
                args.reference_workloads.append(stick)
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0 or args.connections < 1:
        p.error("--repeat, --duration and --connections must be positive, --warmup not negative")
    return args


def configurations(args: argparse.Namespace) -> list[ServerConfig]:
    out = []
    auths = {"off": [False], "on": [True], "both": [False, True]}[args.auth]
    for workers in args.workers:
        for auth in auths:
            if args.broker in ("memory", "both"):
                out.append(ServerConfig(workers, "memory://", auth=auth))
            if args.broker in ("amqp", "both"):
                out.append(ServerConfig(workers, args.amqp_url, f"bench{secrets.token_hex(3)}.", auth=auth))
    return out


def _line(label: str, r: RunResult) -> str:
    codes = f" {r.statuses}" if r.statuses else ""
    errors = f"{r.non_2xx} non-2xx{codes}, {r.socket_errors} socket errors"
    cpu = ""
    if r.server_cpu_cores is not None and r.machine_cpu_cores is not None:
        cpu = (
            f"; CPU: server {r.server_cpu_cores:.2f}, whole machine {r.machine_cpu_cores:.2f} cores, "
            f"{r.server_cpu_ms_per_request or 0:.2f} ms/request; {r.db_connections} db sessions"
        )
    return (
        f"   {label:<9} {r.rps:>8,.0f} req/s  p50 {r.p50_ms:6.1f}  p95 {r.p95_ms:6.1f}  "
        f"p99 {r.p99_ms:6.1f}  max {r.max_ms:7.1f} ms  ({r.requests:,} requests; {errors}{cpu})"
    )


class Harness:
    def __init__(
        self, args: argparse.Namespace, loadgen: LoadGenerator, spy: str | None, workdir: Path
    ) -> None:
        self.args = args
        self.loadgen = loadgen
        self.spy = spy
        self.workdir = workdir
        self.database = ""
        self.auth_headers: dict[str, str] = {}  # the key of a configuration with auth on

    async def measure(self, server: ServerProcess, spec: LoadSpec, seconds: float) -> RunResult:
        cpu0, busy0, t0 = server.cpu_seconds(), machine_busy_seconds(), time.monotonic()
        if self.auth_headers:
            spec = dataclasses.replace(spec, headers={**spec.headers, **self.auth_headers})
        r = await self.loadgen.run(
            spec,
            server.base_url,
            connections=self.args.connections,
            seconds=seconds,
            workdir=self.workdir,
        )
        wall = time.monotonic() - t0
        r.server_cpu_cores = (server.cpu_seconds() - cpu0) / wall
        r.machine_cpu_cores = (machine_busy_seconds() - busy0) / wall
        r.db_connections = await connection_count(self.args.pg_url, self.database)
        return r

    async def workload(self, wl: Workload, ctx: Context, server: ServerProcess) -> WorkloadResult:
        a = self.args
        print(f"-- {wl.name}: {wl.summary}", flush=True)
        spec = await wl.prepare(ctx)
        drained = await server.quiesce()
        if drained is None:
            print("   (the server was still busy with background work after 300 s; measuring anyway)")
        elif drained > 2:
            print(f"   (waited {drained:.0f} s for the server's background work to drain first)")
        warm = None
        if a.warmup > 0:
            warm = await self.measure(server, spec, a.warmup)
            print(_line("warm-up", warm), flush=True)
        runs = []
        for i in range(a.repeat):
            r = await self.measure(server, spec, a.duration)
            runs.append(r)
            print(_line(f"run {i + 1}", r), flush=True)
        result = WorkloadResult(wl.name, wl.target, runs, median_result(runs), warm, drained)
        if self.spy:
            result.profile = await self.profile(wl, spec, server)
        return result

    async def profile(self, wl: Workload, spec: LoadSpec, server: ServerProcess) -> dict[str, object]:
        assert self.spy is not None
        label = server.config.label.replace("/", "-")
        pids = server.worker_pids()
        outs = [RESULTS_DIR / f"profile-{label}-{wl.name}-{pid}.txt" for pid in pids]
        seconds = self.args.duration
        recording = [
            asyncio.create_task(prof.record(self.spy, pid, seconds, out))
            for pid, out in zip(pids, outs, strict=True)
        ]
        r = await self.measure(server, spec, seconds + 1)
        files = await asyncio.gather(*recording)
        print(_line("profiled", r))
        summary = prof.summarise(list(files))
        print(prof.format_summary(f"   profile of {wl.name} ({', '.join(map(str, files))})", summary))
        return {"files": [str(f) for f in files], "run_under_profiler": r.as_dict(), **summary.as_dict()}

    async def _serve(self, cr: ConfigResult, server: ServerProcess, workloads: list[str]) -> None:
        """Start ``server``, run the workloads on it, stop it (SIGTERM, checked)."""
        a = self.args
        try:
            await server.start()
            print(f"   database {self.database}, server pid {server.pid} on {server.base_url}")
            headers = self.auth_headers
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0, headers=headers) as client:
                ctx = Context(server.base_url, client, self.workdir, a.projects, a.seed_tasks)
                for name in workloads:
                    cr.workloads.append(await self.workload(REGISTRY[name](), ctx, server))
        finally:
            cr.stop = await server.stop()
            cr.log_issues = server.log_issues()
            status = "clean exit (0)" if cr.stop.clean else f"NOT CLEAN: rc={cr.stop.returncode}"
            print(f"   SIGTERM: {status} after {cr.stop.seconds:.1f}s {cr.stop.note}".rstrip())

    async def reference(self, workers: int) -> ConfigResult:
        """The bare reference app on a scratch database, with the same load."""
        a = self.args
        config = ServerConfig(workers, "memory://", reference=True)
        self.auth_headers = {}
        cr = ConfigResult(config)
        log_path = RESULTS_DIR / f"server-{workers}w-reference.log"
        cr.log_path = str(log_path)
        print(
            f"== {config.label}: the reference app (bench/reference_app.py), {workers} worker(s)", flush=True
        )
        try:
            async with reference_database(a.pg_url, config) as (db_url, env):
                self.database = db_url.rsplit("/", 1)[1]
                server = ServerProcess(config, env, log_path, asgi_app=REFERENCE_APP)
                await self._serve(cr, server, a.reference_workloads)
        except Exception as exc:
            cr.error = f"{type(exc).__name__}: {exc}"
            print(f"   FAILED: {cr.error}", file=sys.stderr)
        return cr

    async def configuration(self, config: ServerConfig) -> ConfigResult:
        a = self.args
        cr = ConfigResult(config)
        log_path = RESULTS_DIR / f"server-{config.label.replace('/', '-').replace('+', '-')}.log"
        cr.log_path = str(log_path)
        print(f"== {config.label}: {config.workers} worker(s), broker {config.broker_url}", flush=True)
        try:
            async with scratch_database(a.pg_url) as db_url:
                self.database = db_url.rsplit("/", 1)[1]
                env = server_env(db_url, config)
                await migrate(env)
                key = await create_admin_key(env) if config.auth else None
                self.auth_headers = {"Authorization": f"Bearer {key}"} if key else {}
                await self._serve(cr, ServerProcess(config, env, log_path), a.workloads)
        except Exception as exc:
            cr.error = f"{type(exc).__name__}: {exc}"
            print(f"   FAILED: {cr.error}", file=sys.stderr)
        finally:
            if config.broker == "amqp":
                with contextlib.suppress(Exception):
                    await delete_broker_objects(config.broker_url, config.events_prefix)
        if cr.log_issues:
            print(f"   server log {log_path}: {len(cr.log_issues)} warning/error line(s):")
            for n, line in summarise_issues(cr.log_issues):
                print(f"     {n:>4} x {line[:180]}")
        return cr


async def busy_cores(seconds: float) -> float:
    """Cores busy on average over ``seconds``, across the whole machine."""
    before = machine_busy_seconds()
    await asyncio.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)

    loadgen: LoadGenerator
    wrk = await find_wrk() if args.loadgen in ("auto", "wrk") else None
    if wrk:
        loadgen = WrkLoadGenerator(wrk, threads=args.threads)
    elif args.loadgen == "wrk":
        print("python -m bench: wrk is not available", file=sys.stderr)
        return 2
    else:
        loadgen = PythonLoadGenerator()
        print(
            "bench: using the Python fallback load generator; it is client-bound, so figures are lower bounds"
        )
    spy = prof.py_spy() if args.profile else None
    if args.profile and not spy:
        print("bench: --profile needs py-spy (.venv/bin/pip install py-spy); not profiling", file=sys.stderr)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: list[ConfigResult] = []
    configs = configurations(args)
    options: dict[str, object] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    baseline = await busy_cores(2.0)
    waited = 0.0
    while baseline > 0.25 and waited < args.wait_idle:
        if waited == 0:
            print(f"bench: waiting up to {args.wait_idle:.0f}s for the machine to be idle", flush=True)
        baseline = await busy_cores(5.0)
        waited += 5.0
    options["idle_machine_cpu_cores_before"] = baseline
    if baseline > 0.25:
        print(
            f"bench: WARNING: the machine was already busy before the benchmark ({baseline:.2f} of "
            f"{os.cpu_count()} cores, other processes): the figures will be lower and noisier",
            flush=True,
        )
    try:
        with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
            harness = Harness(args, loadgen, spy, Path(tmp))
            for config in configs:
                results.append(await harness.configuration(config))
            if args.reference_workloads:
                results.append(await harness.reference(args.workers[0]))
    finally:
        if results:
            print()
            print(table(results, loadgen.name, args.connections))
            scaled = calibration(results)
            if scaled:
                print()
                print(calibration_table(scaled))
            write_json(args.output, results, options, loadgen.name, scaled)
            print(f"figures written to {args.output}")
    failed = any(r.error or (r.stop and not r.stop.clean) for r in results)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("python -m bench: interrupted; server stopped and database dropped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM
        print("python -m bench: terminated; server stopped and database dropped", file=sys.stderr)
        return 143
