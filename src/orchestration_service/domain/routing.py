"""Routing decisions and the built-in analyzer: deterministic rules from YAML.

Pure: given a description (and the rules), it returns a decision with the reason, so the
same input always routes the same way and every decision can be explained.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

DOMAINS = ("code-general", "code-vision", "code-embedded", "documentation", "ui-design")
MODES = ("new_project", "modify", "fix_bug")
TIERS = ("tiny", "small", "large", "frontier")
QA_PROFILES = ("consensus", "adversarial", "security", "testing", "documentation", "human")


@dataclass(slots=True)
class RoutingDecision:
    mode: str
    domain: str
    tier: str
    qa_profile: str
    analyzer: str  # builtin | agent-service | pinned (+ which fields were pinned)
    reason: str
    needs_decomposition: bool = False
    estimated_complexity: Any = None
    pinned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply_pins(self, options: dict[str, Any]) -> RoutingDecision:
        """Options that pin domain, tier or qa_profile win over any analyzer."""
        for name in ("domain", "tier", "qa_profile"):
            value = options.get(name)
            if value:
                setattr(self, name, value)
                self.pinned.append(name)
        if self.pinned:
            self.reason += f"; pinned by the submitter: {', '.join(self.pinned)}"
        return self


class RulesError(ValueError):
    pass


@lru_cache(maxsize=4096)
def _phrase(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(phrase.lower()) + r"(?![\w-])")


def _first_keyword(text: str, keywords: list[str]) -> str | None:
    for kw in keywords:
        if _phrase(str(kw)).search(text):
            return str(kw)
    return None


class BuiltinAnalyzer:
    name = "builtin"

    def __init__(self, rules: dict[str, Any]) -> None:
        self.rules = rules
        self._check()

    def _check(self) -> None:
        r = self.rules
        try:
            for rule in r["domains"]:
                if rule["domain"] not in DOMAINS:
                    raise RulesError(f"unknown domain {rule['domain']!r}")
            if r["default_domain"] not in DOMAINS:
                raise RulesError(f"unknown default_domain {r['default_domain']!r}")
            for rule in r["modes"]:
                if rule["mode"] not in MODES:
                    raise RulesError(f"unknown mode {rule['mode']!r}")
            if r["default_mode"] not in MODES:
                raise RulesError(f"unknown default_mode {r['default_mode']!r}")
            for d, t in r["tiers"]["by_domain"].items():
                if d not in DOMAINS or t not in TIERS:
                    raise RulesError(f"tiers.by_domain: bad entry {d}: {t}")
            for rule in r["tiers"].get("adjust", []):
                if rule["tier"] not in TIERS:
                    raise RulesError(f"unknown tier {rule['tier']!r}")
            for d, q in r["qa_profiles"]["by_domain"].items():
                if d not in DOMAINS or q not in QA_PROFILES:
                    raise RulesError(f"qa_profiles.by_domain: bad entry {d}: {q}")
            for rule in r["qa_profiles"].get("adjust", []):
                if rule["qa_profile"] not in QA_PROFILES:
                    raise RulesError(f"unknown qa_profile {rule['qa_profile']!r}")
        except (KeyError, TypeError) as exc:
            raise RulesError(f"routing rules are missing or mistyped: {exc}") from None

    def analyze(self, description: str) -> RoutingDecision:
        text = description.lower()
        words = len(text.split())
        r = self.rules
        reasons: list[str] = []

        domain = r["default_domain"]
        for rule in r["domains"]:
            kw = _first_keyword(text, rule["keywords"])
            if kw:
                domain = rule["domain"]
                reasons.append(f"domain {domain} (keyword {kw!r})")
                break
        else:
            reasons.append(f"domain {domain} (default)")

        mode = r["default_mode"]
        for rule in r["modes"]:
            kw = _first_keyword(text, rule["keywords"])
            if kw:
                mode = rule["mode"]
                reasons.append(f"mode {mode} (keyword {kw!r})")
                break
        else:
            reasons.append(f"mode {mode} (default)")

        tier = r["tiers"]["by_domain"].get(domain, "small")
        tier_reason = f"tier {tier} (usual for {domain})"
        for rule in r["tiers"].get("adjust", []):
            if "only_from" in rule and tier not in rule["only_from"]:
                continue
            kw = _first_keyword(text, rule.get("keywords", [])) if rule.get("keywords") else None
            if (
                kw
                or ("min_words" in rule and words >= rule["min_words"])
                or ("max_words" in rule and words <= rule["max_words"])
            ):
                why = f"keyword {kw!r}" if kw else f"{words} words"
                tier, tier_reason = rule["tier"], f"tier {rule['tier']} ({why})"
                break
        reasons.append(tier_reason)

        qa = r["qa_profiles"]["by_domain"].get(domain, "consensus")
        qa_reason = f"qa_profile {qa} (usual for {domain})"
        for rule in r["qa_profiles"].get("adjust", []):
            kw = _first_keyword(text, rule["keywords"])
            if kw:
                qa, qa_reason = rule["qa_profile"], f"qa_profile {rule['qa_profile']} (keyword {kw!r})"
                break
        reasons.append(qa_reason)

        dec = r.get("decomposition", {})
        needs = words >= dec.get("min_words", 10**9) or bool(_first_keyword(text, dec.get("keywords", [])))
        return RoutingDecision(
            mode=mode,
            domain=domain,
            tier=tier,
            qa_profile=qa,
            analyzer=self.name,
            reason="; ".join(reasons),
            needs_decomposition=needs,
            estimated_complexity="high"
            if tier in ("large", "frontier")
            else "low"
            if tier == "tiny"
            else "medium",
        )
