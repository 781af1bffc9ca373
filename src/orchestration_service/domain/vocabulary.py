"""The routing vocabulary, defined once: modes, domains, worker tiers, QA profiles and the
analyzers that decide them.

Everything else imports these: the API schemas (the enums are the OpenAPI ``Mode``,
``Domain``, ``Tier`` and ``QAProfile``), the routing rules, the Agent Service client and the
metrics labels. The rest of the domain's vocabulary has one home each too: task states and
priorities in :mod:`~orchestration_service.domain.lifecycle` (``TaskStatus``, ``Priority``),
event names and exchanges in :mod:`~orchestration_service.domain.events`.
"""

from __future__ import annotations

from enum import StrEnum

# No docstrings on the enums: pydantic would put them in the OpenAPI and AsyncAPI schemas.


class Mode(StrEnum):
    NEW_PROJECT = "new_project"
    MODIFY = "modify"
    FIX_BUG = "fix_bug"


class Domain(StrEnum):
    CODE_GENERAL = "code-general"
    CODE_VISION = "code-vision"
    CODE_EMBEDDED = "code-embedded"
    DOCUMENTATION = "documentation"
    UI_DESIGN = "ui-design"


class Tier(StrEnum):
    TINY = "tiny"
    SMALL = "small"
    LARGE = "large"
    FRONTIER = "frontier"


class QAProfile(StrEnum):
    CONSENSUS = "consensus"
    ADVERSARIAL = "adversarial"
    SECURITY = "security"
    TESTING = "testing"
    DOCUMENTATION = "documentation"
    HUMAN = "human"


# Who decided a route (RoutingDecision.analyzer; a bounded metrics label).
BUILTIN_ANALYZER = "builtin"
AGENT_ANALYZER = "agent-service"
ANALYZERS: tuple[str, ...] = (BUILTIN_ANALYZER, AGENT_ANALYZER)

# The values as plain strings, in declaration order (rules files, payloads and labels are text).
MODES: tuple[str, ...] = tuple(m.value for m in Mode)
DOMAINS: tuple[str, ...] = tuple(d.value for d in Domain)
TIERS: tuple[str, ...] = tuple(t.value for t in Tier)
QA_PROFILES: tuple[str, ...] = tuple(q.value for q in QAProfile)
