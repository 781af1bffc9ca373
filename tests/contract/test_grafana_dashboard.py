"""The Grafana dashboard under deploy/ queries only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestration_service.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "orchestration-service.json"


def test_every_panel_queries_exported_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exported = {m.name for m in Metrics().registry.collect()}
    # Histograms and counters are queried through their series suffixes.
    series = {f"{n}{s}" for n in exported for s in ("", "_total", "_bucket", "_count", "_sum")}
    used: set[str] = set()
    for panel in doc["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used.update(re.findall(r"\b(orch_[a-z_]+)", target["expr"]))
    assert used, "the dashboard queries no metric"
    unknown = used - series
    assert not unknown, f"the dashboard queries metrics the service does not export: {unknown}"
    required = {
        "orch_http_request_duration_seconds",
        "orch_tasks_submitted_total",
        "orch_task_transitions_total",
        "orch_tasks",
        "orch_events_published_total",
        "orch_events_consumed_total",
        "orch_outbox_pending",
        "orch_outbox_oldest_age_seconds",
        "orch_routing_duration_seconds",
        "orch_dependency_up",
    }
    covered = {name for name in required if any(u.startswith(name) for u in used)}
    assert covered == required, f"not on the dashboard: {required - covered}"
