"""The short fault-injection run (``python -m tests.chaos --short``) as a test: private
PostgreSQL and RabbitMQ, two replicas, load, five faults, then every invariant checked.
Deselect locally with ``-m 'not chaos'``; ``make chaos`` runs the full schedule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.servers import PG_BIN, RABBIT_BIN
from tests.conftest import REQUIRE_SERVICES

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

ROOT = Path(__file__).parent.parent.parent


def test_short_fault_injection_run_keeps_every_invariant(tmp_path: Path) -> None:
    for binary in (PG_BIN / "initdb", RABBIT_BIN / "rabbitmq-server"):
        if not binary.exists():
            msg = f"{binary} is not installed (the chaos suite runs its own servers)"
            if REQUIRE_SERVICES:
                pytest.fail(msg + " and ORCH_REQUIRE_SERVICES=1", pytrace=False)
            pytest.skip(msg)
    # A process of its own: it owns servers and signal handlers, and cleans up on its own.
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--short", "--logs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(run.stdout)
    assert run.returncode == 0, (
        f"chaos run failed (history in {tmp_path}):\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    )
