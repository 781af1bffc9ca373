"""The cost of metrics, tracing and API keys on the submit benchmark (``python -m bench.overhead``).

Four configurations of one server on one scratch PostgreSQL database, measured interleaved
(round-robin, ``--rounds`` times) so that machine noise spreads over all of them; prints
median req/s and p95 per configuration and each one's ratio to the baseline (all off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

from bench.loadgen import LoadSpec, WrkLoadGenerator, find_wrk
from bench.server import CLI, ROOT, ServerConfig, ServerProcess, migrate, scratch_database, server_env
from bench.workloads import API, submit_body

CONFIGS: dict[str, dict[str, str]] = {
    "baseline (metrics, tracing, auth off)": {"ORCH_METRICS_ENABLED": "false"},
    "metrics on": {"ORCH_METRICS_ENABLED": "true"},
    "tracing console (to /dev/null)": {"ORCH_METRICS_ENABLED": "false", "ORCH_OTEL_EXPORTER": "console"},
    "auth on": {"ORCH_METRICS_ENABLED": "false", "ORCH_AUTH_ENABLED": "true"},
}


async def run(args: argparse.Namespace) -> dict[str, object]:
    wrk_path = await find_wrk()
    if wrk_path is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    gen = WrkLoadGenerator(wrk_path)
    config = ServerConfig(workers=1, broker_url="memory://")
    workdir = ROOT / "bench" / "results"
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGS}
    async with scratch_database(args.pg_url) as db_url:
        base_env = server_env(db_url, config)
        await migrate(base_env)
        proc = await asyncio.create_subprocess_exec(
            str(CLI),
            "keys",
            "create",
            "--name",
            "bench",
            "--all-projects",
            "--scope",
            "write",
            env=base_env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        key = (await proc.communicate())[0].decode().strip()
        for _ in range(args.rounds):
            for name, extra in CONFIGS.items():
                env = {**base_env, **extra}
                server = ServerProcess(config=config, env=env, log_path=workdir / "overhead-server.log")
                await server.start()
                try:
                    headers = {"Content-Type": "application/json"}
                    if env.get("ORCH_AUTH_ENABLED") == "true":
                        headers["Authorization"] = f"Bearer {key}"
                    spec = LoadSpec(
                        "POST", (f"{API}/tasks",), submit_body("{seq}", "{project}"), 1000, headers
                    )
                    await gen.run(
                        spec, server.base_url, connections=64, seconds=3, workdir=workdir
                    )  # warm-up
                    r = await gen.run(
                        spec, server.base_url, connections=64, seconds=args.duration, workdir=workdir
                    )
                    if r.non_2xx or r.socket_errors:
                        raise SystemExit(f"{name}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors")
                    results[name].append((r.rps, r.p95_ms))
                    print(f"  {name:<40} {r.rps:8.1f} req/s  p95 {r.p95_ms:6.1f} ms", flush=True)
                finally:
                    await server.stop()
    baseline = statistics.median(rps for rps, _ in results[next(iter(CONFIGS))])
    summary: dict[str, object] = {}
    print(f"\n{'configuration':<40} {'req/s':>9} {'p95 ms':>8} {'vs baseline':>12}")
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p95 = statistics.median(p for _, p in runs)
        summary[name] = {
            "rps": round(rps, 1),
            "p95_ms": round(p95, 1),
            "throughput_ratio": round(rps / baseline, 3),
        }
        print(f"{name:<40} {rps:9.1f} {p95:8.1f} {rps / baseline:11.3f}x")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args(argv)
    summary = asyncio.run(run(args))
    out = ROOT / "bench" / "results" / "overhead.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
