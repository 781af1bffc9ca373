"""The Grafana dashboard under deploy/ queries only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestration_service.metrics import Metrics
from tests.integration.test_observability import REQUIRED_METRICS

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
    required = set(REQUIRED_METRICS)
    covered = {name for name in required if any(u.startswith(name) for u in used)}
    assert covered == required, f"not on the dashboard: {required - covered}"
