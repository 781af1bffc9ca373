"""CloudEvents 1.0 envelopes as the service reads them, with stable ids.

A worker that posts the same outcome twice (a retry after a lost answer, a restart that
handles the task again) must send the same id: the service claims each id once, so the
second post is a ``duplicate`` instead of a second output.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

CONTENT_TYPE = "application/cloudevents+json"
TYPE_PREFIX = "dats."


def stable_id(source: str, kind: str, task_id: str, attempt: int, *extra: object) -> str:
    """The same (source, kind, task, attempt[, extra]) always gives the same id (a UUIDv5)."""
    name = "/".join(str(p) for p in (source, kind, task_id, attempt, *extra))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dats:{name}"))


def envelope(
    kind: str, source: str, data: dict[str, Any], *, id: str | None = None, subject: str | None = None
) -> dict[str, Any]:
    """The envelope of ``dats.<kind>`` (``kind``: ``task.output.created``, ...). Without an
    ``id``, a stable one from the task id and attempt in ``data`` (attempt 1 if absent)."""
    task_id = str(data.get("task_id", ""))
    return {
        "specversion": "1.0",
        "type": TYPE_PREFIX + kind,
        "source": source,
        "id": id or stable_id(source, kind, task_id, int(data.get("attempt") or 1)),
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "subject": subject or task_id or None,
        "data": data,
    }


def event_name(envelope: dict[str, Any]) -> str:
    """``task.ready.small`` of ``dats.task.ready.small`` (the AMQP routing key)."""
    kind = str(envelope.get("type", ""))
    return kind[len(TYPE_PREFIX) :] if kind.startswith(TYPE_PREFIX) else kind
