"""The recovery bounds of the history checker: the short run (inside ``make test``) fails on
a recovery past the worst-case bound only; the full run also on the p95 goal."""

from __future__ import annotations

from tests.chaos.checker import RECOVERY_MAX, RECOVERY_P95, Verdict, recovery_failures


def verdict(*accepted: float | None) -> Verdict:
    return Verdict(recovery=[(f"fault {i}", 1.0, a, 2.0) for i, a in enumerate(accepted)])


def test_a_slow_p95_fails_the_full_run_and_not_the_short_one() -> None:
    slow = verdict(*([RECOVERY_P95 + 1.2] * 5))
    assert recovery_failures(slow) == [f"time to accepted: p95 {RECOVERY_P95 + 1.2:.1f}s > {RECOVERY_P95:g}s"]
    assert recovery_failures(slow, p95_goal=False) == []


def test_a_recovery_past_the_worst_bound_or_none_fails_both() -> None:
    for v in (verdict(1.0, RECOVERY_MAX + 1), verdict(1.0, None)):
        assert any("worst" in f for f in recovery_failures(v, p95_goal=False))
        assert any("worst" in f for f in recovery_failures(v))


def test_quick_recoveries_pass_both() -> None:
    assert recovery_failures(verdict(0.5, 2.0, 9.0)) == []
    assert recovery_failures(verdict(0.5, 2.0, 9.0), p95_goal=False) == []
