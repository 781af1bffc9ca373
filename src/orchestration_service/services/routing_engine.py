"""The routing engine: decides mode, domain, tier and QA profile for each task, fetches its
RAG context, and (when asked) plans its subtasks.

It talks to the Agent and RAG services and never to the database: the Dispatcher
(``dispatcher.py``) claims tasks, calls :meth:`RoutingEngine.analyze` outside any
transaction, and applies the result in a short transaction of its own.

- With an Agent Service: ``/analyze`` decides mode, domain, QA profile and whether the task
  needs decomposition; ``/estimate`` decides the tier (if it fails, the built-in rules give
  the tier for the agent's domain); ``/decompose`` plans subtasks when the submitter asked
  for decomposition and the analysis says it is needed, and plans again a subtask that the
  agent's plan marked not atomic (with the levels left to ``max_depth``).
- The built-in analyzer decides when no Agent Service is configured, and whenever
  ``/analyze`` fails, times out, answers something malformed or its breaker is open; the
  decision's reason then starts with why ("agent-service failed: timeout after 60s;
  builtin: …"). It cannot plan subtasks: such a task runs whole.
- Options that pin domain, tier or qa_profile win over both.
- RAG runs alongside the analysis; if it fails the task is dispatched without context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml

from orchestration_service import tracing
from orchestration_service.config import Settings
from orchestration_service.domain.decomposition import CheckedPlan, PlanError, check_plan
from orchestration_service.domain.routing import BuiltinAnalyzer, RoutingDecision, RulesError
from orchestration_service.domain.task_tree import wants_nested_plan
from orchestration_service.repositories.tasks import TaskRecord
from orchestration_service.services.agent_client import AgentClient
from orchestration_service.services.rag_client import RagClient
from orchestration_service.services.remote import CallFailed, CircuitBreaker, ServiceClient

log = logging.getLogger(__name__)

AGENT = "agent-service"
RAG = "rag-service"


def load_rules(path: str | None) -> dict[str, Any]:
    if path:
        text = Path(path).read_text()
    else:
        text = resources.files("orchestration_service").joinpath("defaults/routing-rules.yaml").read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise RulesError("routing rules must be a YAML mapping")
    return data


@dataclass(slots=True)
class Outcome:
    """Everything the analysis of one task produced; applied by the Dispatcher."""

    decision: RoutingDecision
    rag: dict[str, Any] | None = None  # {context, sources, tokens_used}
    rag_error: str | None = None
    plan: CheckedPlan | None = None
    # Why a task that asked for decomposition runs whole (None when not asked, or planned).
    not_decomposed: str | None = None
    seconds: float = 0.0


class RoutingEngine:
    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        r = settings.routing
        self.builtin = BuiltinAnalyzer(load_rules(r.rules_file))
        self.agent: AgentClient | None = None
        self.rag: RagClient | None = None
        if http is not None and r.agent_service_url:
            self.agent = AgentClient(self._service(AGENT, r.agent_service_url, r.agent_timeout_seconds, http))
        if http is not None and r.rag_service_url:
            self.rag = RagClient(
                self._service(RAG, r.rag_service_url, r.rag_timeout_seconds, http), r.rag_max_tokens
            )
        self.capacity = r.max_concurrent_analyses
        self._slots = asyncio.Semaphore(self.capacity)
        # Metrics hooks: (analyzer, seconds from claim to the decision being applied).
        self.on_routed: list[Callable[[str, float], None]] = []

    def _service(self, name: str, url: str, timeout: float, http: httpx.AsyncClient) -> ServiceClient:
        r = self.settings.routing
        return ServiceClient(
            name,
            url,
            http,
            timeout=timeout,
            retries=r.remote_retries,
            breaker=CircuitBreaker(r.breaker_failure_threshold, r.breaker_reset_seconds),
            probe_ttl=r.health_probe_seconds,
        )

    @property
    def remote(self) -> bool:
        return self.agent is not None or self.rag is not None

    @property
    def lease_seconds(self) -> float:
        """How long a claim on a task must last: the longest an analysis can take (three
        agent calls one after the other; RAG runs alongside), plus a margin."""
        r = self.settings.routing
        agent = 3 * r.agent_timeout_seconds if self.agent else 0.0
        rag = r.rag_timeout_seconds if self.rag else 0.0
        return max(agent, rag) + 10.0

    def routed(self, analyzer: str, seconds: float) -> None:
        for hook in self.on_routed:
            try:
                hook(analyzer, seconds)
            except Exception:  # a metrics hook must never break routing
                log.exception("on_routed hook failed")

    # -- analysis ----------------------------------------------------------------------
    def decide_locally(self, task: TaskRecord) -> Outcome | None:
        """The outcome for ``task`` when it needs no remote call and makes no plan (only the
        built-in analyzer is configured, no decomposition asked): decided at once, so the
        task can be routed as it is submitted. None otherwise."""
        options: dict[str, Any] = task.get("options") or {}
        if self.remote or options.get("decompose"):
            return None
        start = time.monotonic()
        outcome = Outcome(self.builtin.analyze(task["description"]).apply_pins(options))
        outcome.seconds = time.monotonic() - start
        return outcome

    async def analyze(self, task: TaskRecord) -> Outcome:
        """Decide the route of ``task`` (and its plan, and its context). Never raises for a
        failing remote service: every failure becomes a fallback with its reason.

        Runs in the task's trace (its submission's traceparent): the Agent and RAG calls
        are its children, and their traceparent headers carry it on."""
        with tracing.span(
            "route task", parent_traceparent=task.get("traceparent"), attributes={"task.id": str(task["id"])}
        ):
            return await self._analyze(task)

    async def _analyze(self, task: TaskRecord) -> Outcome:
        start = time.monotonic()
        async with self._slots:
            rag_job = asyncio.create_task(self._rag(task)) if self.rag else None
            try:
                outcome = await self._decide(task)
            except BaseException:
                if rag_job is not None:
                    rag_job.cancel()
                    with contextlib.suppress(BaseException):
                        await rag_job
                raise
            if rag_job is not None:
                outcome.rag, outcome.rag_error = await rag_job
        outcome.seconds = time.monotonic() - start
        return outcome

    async def _rag(self, task: TaskRecord) -> tuple[dict[str, Any] | None, str | None]:
        assert self.rag is not None
        try:
            answer = await self.rag.query(task["description"], task["project_id"])
        except CallFailed as exc:
            return None, f"{RAG} failed: {exc.reason}"
        return answer.model_dump(mode="json", exclude_none=True), None

    async def _decide(self, task: TaskRecord) -> Outcome:
        options: dict[str, Any] = task.get("options") or {}
        text: str = task["description"]
        # Asked for at submission, or the Agent Service marked this subtask not atomic.
        nested = wants_nested_plan(task.get("context"))
        wants_plan = bool(options.get("decompose")) or nested
        builtin = self.builtin.analyze(text)
        if self.agent is None:
            outcome = Outcome(builtin.apply_pins(options))
            if wants_plan:
                outcome.not_decomposed = (
                    "no Agent Service is configured and the built-in analyzer cannot plan subtasks"
                )
            return outcome
        try:
            analysis = await self.agent.analyze(text, task["project_id"])
        except CallFailed as exc:
            builtin.reason = f"{AGENT} failed: {exc.reason}; builtin: {builtin.reason}"
            outcome = Outcome(builtin.apply_pins(options))
            if wants_plan:
                outcome.not_decomposed = (
                    f"{AGENT} failed ({exc.reason}) and the built-in analyzer cannot plan subtasks"
                )
            return outcome

        domain = options.get("domain") or analysis.domain
        reasons = [
            f"mode {analysis.mode}, domain {analysis.domain}, qa_profile {analysis.qa_profile} (analysis)"
        ]
        estimate: dict[str, Any] | None = None
        if options.get("tier"):
            tier = str(options["tier"])  # pinned: no estimate needed
        else:
            try:
                est = await self.agent.estimate(str(task["id"]), text, domain)
            except CallFailed as exc:
                tier, why = self.builtin.tier_for(text.lower(), domain)
                reasons.append(f"{why} from builtin rules: estimate failed: {exc.reason}")
            else:
                tier = est.recommended_tier
                estimate = est.model_dump(mode="json", exclude_none=True)
                extra = ", ".join(
                    f"{k} {v}"
                    for k, v in (("confidence", est.confidence), ("tokens", est.estimated_tokens))
                    if v is not None
                )
                reasons.append(f"tier {tier} (estimate{': ' + extra if extra else ''})")
        decision = RoutingDecision(
            mode=analysis.mode,
            domain=analysis.domain,
            tier=tier,
            qa_profile=analysis.qa_profile,
            analyzer=AGENT,
            reason="; ".join(reasons),
            needs_decomposition=analysis.needs_decomposition,
            estimated_complexity=analysis.estimated_complexity,
            estimate=estimate,
        ).apply_pins(options)
        outcome = Outcome(decision)
        if wants_plan:
            # The agent's own "not atomic" mark is its verdict on a subtask's need.
            await self._plan(task, analysis.needs_decomposition or nested, outcome)
        return outcome

    async def _plan(self, task: TaskRecord, needed: bool, outcome: Outcome) -> None:
        assert self.agent is not None
        r = self.settings.routing
        depth = int(task.get("depth") or 0)
        if not needed:
            outcome.not_decomposed = f"{AGENT} says the task does not need decomposition"
            return
        if depth + 1 > r.max_depth:
            outcome.not_decomposed = (
                f"the task is at depth {depth}; subtasks would exceed max_depth {r.max_depth}"
            )
            return
        try:
            answer = await self.agent.decompose(str(task["id"]), task["description"], r.max_depth - depth)
        except CallFailed as exc:
            outcome.not_decomposed = f"decomposition failed: {AGENT} failed: {exc.reason}"
            return
        try:
            outcome.plan = check_plan(
                answer.plan(), parent_depth=depth, max_depth=r.max_depth, max_subtasks=r.max_subtasks
            )
        except PlanError as exc:
            outcome.not_decomposed = f"the plan was rejected: {exc}"

    # -- health ------------------------------------------------------------------------
    def dependency_states(self) -> dict[str, str]:
        """Agent and RAG service states from recent calls only (cheap, for metrics)."""
        return {
            key: client.service.state() if client is not None else "unconfigured"
            for key, client in (("agent_service", self.agent), ("rag_service", self.rag))
        }

    async def health(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Agent and RAG service states for /health/detailed (may probe GET /health)."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for key, client in (("agent_service", self.agent), ("rag_service", self.rag)):
            if client is None:
                out[key] = ("unconfigured", {})
            else:
                out[key] = await client.service.health()
        return out
