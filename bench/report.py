"""The summary table and the JSON file of the figures."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.loadgen import RunResult
from bench.server import ROOT, ServerConfig, StopResult, summarise_issues
from bench.workloads import REGISTRY, Target


@dataclass
class WorkloadResult:
    name: str
    target: Target | None
    runs: list[RunResult]
    median: RunResult
    warmup: RunResult | None = None
    drained_s: float | None = 0.0  # wait for background work before warm-up; None: gave up
    profile: dict[str, Any] | None = None

    def verdict(self) -> str:
        m = self.median
        if self.target is None:
            return "-" if not m.errors else "errors"
        misses = self.target.misses(m.p95_ms, m.rps, m.errors)
        return "PASS" if not misses else "MISS (" + ", ".join(misses) + ")"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": {"p95_ms": self.target.p95_ms, "min_rps": self.target.min_rps} if self.target else None,
            "verdict": self.verdict(),
            "median": self.median.as_dict(),
            "runs": [r.as_dict() for r in self.runs],
            "warmup": self.warmup.as_dict() if self.warmup else None,
            "background_drain_wait_s": self.drained_s,
            "profile": self.profile,
        }


@dataclass
class ConfigResult:
    config: ServerConfig
    workloads: list[WorkloadResult] = field(default_factory=list)
    stop: StopResult | None = None
    log_issues: list[str] = field(default_factory=list)
    log_path: str = ""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.config.label,
            "workers": self.config.workers,
            "broker": self.config.broker,
            "error": self.error,
            "workloads": {w.name: w.as_dict() for w in self.workloads},
            "server_stop": vars(self.stop) if self.stop else None,
            "server_log": self.log_path,
            "server_log_issues": [
                {"count": n, "line": line} for n, line in summarise_issues(self.log_issues, 20)
            ],
            "server_log_issue_count": len(self.log_issues),
        }


def table(results: list[ConfigResult], loadgen: str, connections: int) -> str:
    head = (
        f"{'config':<12} {'workload':<9} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'non-2xx':>7} {'sockerr':>7} {'cpu srv/all':>11} {'ms cpu/req':>10}  {'target':<24} verdict"
    )
    lines = [
        f"Summary: {connections} connections, load generator {loadgen}, "
        f"{os.cpu_count()} cores shared by server and load generator",
        head,
        "-" * len(head),
    ]
    for cr in results:
        if cr.error and not cr.workloads:
            lines.append(f"{cr.config.label:<12} FAILED: {cr.error.splitlines()[0][:90]}")
            continue
        for w in cr.workloads:
            m = w.median
            cpu = "-"
            if m.server_cpu_cores is not None and m.machine_cpu_cores is not None:
                cpu = f"{m.server_cpu_cores:.2f}/{m.machine_cpu_cores:.2f}"
            per_req = m.server_cpu_ms_per_request
            per_req_s = f"{per_req:.2f}" if per_req is not None else "-"
            lines.append(
                f"{cr.config.label:<12} {w.name:<9} {m.rps:>8,.0f} {m.p50_ms:>7.1f} {m.p95_ms:>7.1f} "
                f"{m.p99_ms:>7.1f} {m.non_2xx:>7} {m.socket_errors:>7} {cpu:>11} {per_req_s:>10}  "
                f"{w.target.describe() if w.target else '-':<24} {w.verdict()}"
            )
        if cr.error:
            lines.append(f"{cr.config.label:<12} (stopped early: {cr.error.splitlines()[0][:90]})")
    lines.append(
        "cpu srv/all = cores busy on average: the server's processes / the whole machine "
        "(server, PostgreSQL, load generator, anything else running);"
    )
    lines.append(
        "ms cpu/req = the server's CPU time per answered request (background work included): "
        "1000 / it is the req/s one fully used core could give."
    )
    return "\n".join(lines)


def calibration(results: list[ConfigResult]) -> list[dict[str, Any]]:
    """Each service workload's target scaled by its yardstick, the reference app measured in
    the same run: req/s by (reference req/s here / the issue's), p95 by its inverse (under a
    closed load of N connections, latency is about N / throughput)."""
    refs = {w.name: w for cr in results if cr.config.reference for w in cr.workloads}
    out: list[dict[str, Any]] = []
    for cr in results:
        if cr.config.reference:
            continue
        for w in cr.workloads:
            stick = REGISTRY[w.name].yardstick if w.name in REGISTRY else None
            ref = refs.get(stick or "")
            figures = REGISTRY[stick].reference_figures if stick else None
            if w.target is None or ref is None or figures is None or ref.median.rps <= 0:
                continue
            factor = ref.median.rps / figures[0]
            scaled = Target(p95_ms=w.target.p95_ms / factor, min_rps=w.target.min_rps * factor)
            misses = scaled.misses(w.median.p95_ms, w.median.rps, w.median.errors)
            out.append(
                {
                    "config": cr.config.label,
                    "workload": w.name,
                    "yardstick": stick,
                    "reference_rps": round(ref.median.rps, 1),
                    "reference_p95_ms": round(ref.median.p95_ms, 1),
                    "issue_reference_rps": figures[0],
                    "issue_reference_p95_ms": figures[1],
                    "machine_factor": round(factor, 3),
                    "scaled_target": {"p95_ms": round(scaled.p95_ms, 1), "min_rps": round(scaled.min_rps, 1)},
                    "rps": round(w.median.rps, 1),
                    "p95_ms": round(w.median.p95_ms, 1),
                    "rps_vs_reference": round(w.median.rps / ref.median.rps, 3),
                    "target_rps_vs_reference": round(w.target.min_rps / figures[0], 3),
                    "verdict": "PASS" if not misses else "MISS (" + ", ".join(misses) + ")",
                }
            )
    return out


def calibration_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'config':<12} {'workload':<9} {'yardstick':<11} {'ref req/s (issue)':>19} {'factor':>6}  "
        f"{'scaled target':<26} {'measured':<22} {'req/s ÷ ref (target)':<21} verdict"
    )
    lines = [
        "Targets scaled to this machine by the reference app (bare Starlette + asyncpg, same run):",
        head,
        "-" * len(head),
    ]
    for r in rows:
        t = r["scaled_target"]
        ref = f"{r['reference_rps']:,.0f} ({r['issue_reference_rps']:,.0f})"
        target = f"p95<={t['p95_ms']:.0f}ms, >={t['min_rps']:,.0f}/s"
        measured = f"{r['rps']:,.0f}/s, p95 {r['p95_ms']:.0f} ms"
        ratio = f"{r['rps_vs_reference']:.2f} ({r['target_rps_vs_reference']:.2f})"
        lines.append(
            f"{r['config']:<12} {r['workload']:<9} {r['yardstick']:<11} {ref:>19} "
            f"{r['machine_factor']:>6.2f}  {target:<26} {measured:<22} {ratio:<21} {r['verdict']}"
        )
    lines.append(
        "factor = the reference's req/s here / the issue's; scaled target: req/s x factor, p95 / factor."
    )
    return "\n".join(lines)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_json(
    path: Path,
    results: list[ConfigResult],
    options: dict[str, Any],
    loadgen: str,
    scaled: list[dict[str, Any]] | None = None,
) -> None:
    doc = {
        "finished_at": datetime.now(UTC).isoformat(),
        "git_revision": _git_revision(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "loadgen": loadgen,
        "options": options,
        "configurations": [r.as_dict() for r in results],
        "targets_scaled_to_this_machine": scaled or [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
