"""The routing engine: decides mode, domain, tier and QA profile for each task.

The built-in analyzer decides when no Agent Service is configured, and whenever it fails.
Options that pin domain, tier or qa_profile win over both.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from orchestration_service.config import Settings
from orchestration_service.domain.routing import BuiltinAnalyzer, RoutingDecision, RulesError

log = logging.getLogger(__name__)


def load_rules(path: str | None) -> dict[str, Any]:
    if path:
        text = Path(path).read_text()
    else:
        text = resources.files("orchestration_service").joinpath("defaults/routing-rules.yaml").read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise RulesError("routing rules must be a YAML mapping")
    return data


class RoutingEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.builtin = BuiltinAnalyzer(load_rules(settings.routing.rules_file))

    async def decide(self, task: dict[str, Any]) -> RoutingDecision:
        decision = self.builtin.analyze(task["description"])
        return decision.apply_pins(task.get("options") or {})
