"""Routing decisions and the built-in analyzer: deterministic rules from YAML.

Pure: given a description (and the rules), it returns a decision with the reason, so the
same input always routes the same way and every decision can be explained.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from orchestration_service.domain.vocabulary import BUILTIN_ANALYZER, DOMAINS, MODES, QA_PROFILES, TIERS, Tier


@dataclass(slots=True)
class RoutingDecision:
    mode: str
    domain: str
    tier: str
    qa_profile: str
    analyzer: str  # builtin | agent-service (pinned fields are listed in `pinned`)
    reason: str
    needs_decomposition: bool = False
    estimated_complexity: Any = None
    pinned: list[str] = field(default_factory=list)
    # What the Agent Service's /estimate said (recommended tier, tokens, confidence), if asked.
    estimate: dict[str, Any] | None = None

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
        phrase = str(kw)
        # The substring test (cheap) rules out most keywords before the word-boundary regex.
        if phrase.lower() in text and _phrase(phrase).search(text):
            return phrase
    return None


class BuiltinAnalyzer:
    name = BUILTIN_ANALYZER

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
        domain, domain_reason = self.domain_for(text)
        mode, mode_reason = self.mode_for(text)
        tier, tier_reason = self.tier_for(text, domain)
        qa, qa_reason = self.qa_profile_for(text, domain)
        return RoutingDecision(
            mode=mode,
            domain=domain,
            tier=tier,
            qa_profile=qa,
            analyzer=self.name,
            reason="; ".join((domain_reason, mode_reason, tier_reason, qa_reason)),
            needs_decomposition=self.needs_decomposition(text),
            estimated_complexity="high"
            if tier in (Tier.LARGE, Tier.FRONTIER)
            else "low"
            if tier == Tier.TINY
            else "medium",
        )

    # Each part takes the lower-cased description and returns (value, reason).
    def domain_for(self, text: str) -> tuple[str, str]:
        for rule in self.rules["domains"]:
            kw = _first_keyword(text, rule["keywords"])
            if kw:
                return rule["domain"], f"domain {rule['domain']} (keyword {kw!r})"
        domain = self.rules["default_domain"]
        return domain, f"domain {domain} (default)"

    def mode_for(self, text: str) -> tuple[str, str]:
        for rule in self.rules["modes"]:
            kw = _first_keyword(text, rule["keywords"])
            if kw:
                return rule["mode"], f"mode {rule['mode']} (keyword {kw!r})"
        mode = self.rules["default_mode"]
        return mode, f"mode {mode} (default)"

    def tier_for(self, text: str, domain: str) -> tuple[str, str]:
        """The domain's usual tier, adjusted by the first matching rule."""
        words = len(text.split())
        tiers = self.rules["tiers"]
        tier = tiers["by_domain"].get(domain, "small")
        for rule in tiers.get("adjust", []):
            if "only_from" in rule and tier not in rule["only_from"]:
                continue
            kw = _first_keyword(text, rule.get("keywords", [])) if rule.get("keywords") else None
            if (
                kw
                or ("min_words" in rule and words >= rule["min_words"])
                or ("max_words" in rule and words <= rule["max_words"])
            ):
                why = f"keyword {kw!r}" if kw else f"{words} words"
                return rule["tier"], f"tier {rule['tier']} ({why})"
        return tier, f"tier {tier} (usual for {domain})"

    def qa_profile_for(self, text: str, domain: str) -> tuple[str, str]:
        qa_rules = self.rules["qa_profiles"]
        for rule in qa_rules.get("adjust", []):
            kw = _first_keyword(text, rule["keywords"])
            if kw:
                return rule["qa_profile"], f"qa_profile {rule['qa_profile']} (keyword {kw!r})"
        qa = qa_rules["by_domain"].get(domain, "consensus")
        return qa, f"qa_profile {qa} (usual for {domain})"

    def needs_decomposition(self, text: str) -> bool:
        dec = self.rules.get("decomposition", {})
        words = len(text.split())
        return words >= dec.get("min_words", 10**9) or bool(_first_keyword(text, dec.get("keywords", [])))
