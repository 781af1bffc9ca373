"""Lifecycle steps: the state changes every entry point shares.

Each step runs inside a caller's unit of work and writes, together, the task row, its
history row and its outgoing events (the outbox). Use cases in ``task_manager`` and the
event handlers open the unit of work; these steps never commit. The steps live by theme:
``transitions`` (the primitive), ``creation`` (and decomposition), ``attempts`` (dispatch),
``finishing`` (retries, failures, cancel cascades, parents settling), ``retrying``
(retry by hand). Every published task payload is built in ``payloads``.
"""

from __future__ import annotations

from orchestration_service.services.lifecycle.creation import Creation
from orchestration_service.services.lifecycle.retrying import Retrying
from orchestration_service.services.lifecycle.transitions import Step, emit, stamp_trace, utcnow


class Lifecycle(Retrying, Creation):
    """Every lifecycle step, on the settings' limits."""


__all__ = ["Lifecycle", "Step", "emit", "stamp_trace", "utcnow"]
