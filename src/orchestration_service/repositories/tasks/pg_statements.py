"""PostgreSQL's hand-written task statements (asyncpg), and its SQL text for the dispatch
queues.

Submitting a task and reading its status are most of the API's traffic. Through the
SQLAlchemy layer each cost about 2 ms of CPU (statement objects, greenlet hops, result
processing); here each is one prepared statement, cached per connection, and one round
trip, shared by every call that arrives while the previous one is at the database
(``db.batching``). They write and read exactly the rows ``SqlTasks`` does: the repository
suite runs every port method on both backends.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

from orchestration_service.db.tables import UTCDateTime, tasks
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.repositories.tasks.port import HistoryRecord

# Status documents: each task, plus whether it has subtasks or dependencies (rarely: then
# the caller reads those too). Columns are named as in ``tables.tasks``. Several at once.
STATUS = """
SELECT t.*,
       EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id) AS _has_children,
       EXISTS (SELECT 1 FROM task_dependencies d WHERE d.task_id = t.id) AS _has_deps
FROM tasks t WHERE t.id = ANY($1::uuid[])
"""


# Submissions in one statement, and so one implicit transaction: the tasks, their history
# rows and their outbox events are written together or not at all. Each row arrives as an
# element of a column array, so one statement carries one submission or a hundred (see
# ``PostgresHotPaths.submit``). A task whose Idempotency-Key is taken is skipped, and so are its
# history and events (they join the inserted ids); the caller replays it.
@functools.cache
def submit_statement(on_conflict: bool) -> str:
    types = [_array_type(c) for c in TASK_COLUMNS]
    arrays = ", ".join(f"${i + 1}::{kind}[]" for i, (kind, _) in enumerate(types))
    names = ", ".join(TASK_COLUMNS)
    values = ", ".join(f"v.{c}{cast}" for c, (_, cast) in zip(TASK_COLUMNS, types, strict=True))
    history_types = ("uuid", *_HISTORY_TYPES, "timestamptz")  # task_id, …, created_at
    first = len(types) + 1
    history = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(history_types))
    first += len(history_types)
    events = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(("uuid", *_EVENT_TYPES)))
    first += 1 + len(_EVENT_TYPES)
    # Without Idempotency-Keys nothing can conflict (NULL keys never do): a plain insert
    # skips the speculative insertion that ON CONFLICT costs.
    conflict = "    ON CONFLICT (project_id, idempotency_key) DO NOTHING\n" if on_conflict else ""
    # The projects seen for the first time (``Submission.new_project``), in id order: two
    # batches creating the same projects never wait on each other in opposite orders.
    return f"""
WITH p AS (
    INSERT INTO projects (project_id, created_at, updated_at)
    SELECT x.project_id, x.at, x.at
    FROM unnest(${first}::text[], ${first + 1}::timestamptz[]) AS x(project_id, at)
    ORDER BY x.project_id
    ON CONFLICT (project_id) DO NOTHING
), t AS (
    INSERT INTO tasks ({names}, updated_at)
    SELECT {values}, v.created_at
    FROM unnest({arrays}) WITH ORDINALITY AS v({names}, n)
    ORDER BY v.n
{conflict}    RETURNING id, created_at
), h AS (
    INSERT INTO task_history (task_id, from_status, to_status, reason, cause, attempt, details, created_at)
    SELECT r.task_id, r.from_status, r.to_status, r.reason, r.cause, r.attempt, r.details::jsonb, r.created_at
    FROM unnest({history})
         WITH ORDINALITY AS r(task_id, from_status, to_status, reason, cause, attempt, details, created_at, n)
    JOIN t ON t.id = r.task_id
    ORDER BY r.n
), o AS (
    INSERT INTO outbox (event_id, event_type, exchange, subject, project_id, envelope, created_at)
    SELECT e.event_id, e.event_type, e.exchange, e.subject, e.project_id, e.envelope::jsonb, t.created_at
    FROM unnest({events})
         WITH ORDINALITY AS e(task_id, event_id, event_type, exchange, subject, project_id, envelope, n)
    JOIN t ON t.id = e.task_id
    ORDER BY e.n
)
SELECT id FROM t
"""


# A transition's history rows and outbox events in one statement (one round trip instead of
# two), inside the caller's transaction.
HISTORY_AND_EVENTS = """
WITH h AS (
    INSERT INTO task_history (task_id, from_status, to_status, reason, cause, attempt, details, created_at)
    SELECT r.task_id, r.from_status, r.to_status, r.reason, r.cause, r.attempt, r.details::jsonb, r.created_at
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[],
                $8::timestamptz[])
         WITH ORDINALITY AS r(task_id, from_status, to_status, reason, cause, attempt, details, created_at, n)
    ORDER BY r.n
)
INSERT INTO outbox (event_id, event_type, exchange, subject, project_id, envelope, created_at)
SELECT e.event_id, e.event_type, e.exchange, e.subject, e.project_id, e.envelope::jsonb, $15
FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
     WITH ORDINALITY AS e(event_id, event_type, exchange, subject, project_id, envelope, n)
ORDER BY e.n
"""

# A consumed event: its task read and locked, and the event claimed for idempotency under
# the task's project (nothing if that project has seen its id), in one round trip. The task
# is read first (a CTE referenced twice runs once), so the claim knows the project; no task,
# no claim. The task's columns are all NULL when it does not exist.
CLAIM_EVENT_AND_LOCK_TASK = """
WITH t AS MATERIALIZED (
    SELECT * FROM tasks WHERE id = $6 FOR UPDATE
), c AS (
    INSERT INTO processed_events (project_id, event_id, event_type, source, outcome, processed_at)
    SELECT t.project_id, $1, $2, $3, $4, $5 FROM t
    ON CONFLICT (project_id, event_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM c) AS _claimed, t.*
FROM (SELECT 1) AS one LEFT JOIN t ON true
"""

TASK_COLUMNS = (
    "id",
    "project_id",
    "description",
    "priority",
    "priority_rank",
    "status",
    "domain",
    "tier",
    "qa_profile",
    "options",
    "attempt",
    "max_attempts",
    "timeout_seconds",
    "depth",
    "idempotency_key",
    "request_hash",
    "traceparent",
    "created_at",
    "mode",
    "routing",
    "context",
    "routed_at",
)


_HISTORY_TYPES = ("text", "text", "text", "text", "int", "text")  # from_status … details
_EVENT_TYPES = ("text", "text", "text", "text", "text", "text")  # event_id … envelope


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def history_arrays(history: Sequence[HistoryRecord]) -> list[list[Any]]:
    """History rows as the column arrays the statements unnest (from_status … details)."""
    return [
        [h["from_status"] for h in history],
        [h["to_status"] for h in history],
        [h["reason"] for h in history],
        [h["cause"] for h in history],
        [h["attempt"] for h in history],
        [_json_text(h["details"]) for h in history],
    ]


def event_arrays(events: Sequence[OutgoingEvent]) -> list[list[Any]]:
    """Outbox events as the column arrays the statements unnest (event_id … envelope)."""
    return [
        [e.id for e in events],
        [e.name for e in events],
        [e.exchange for e in events],
        [e.subject for e in events],
        [e.project_id for e in events],
        [_json_text(e.envelope()) for e in events],
    ]


async def add_history_and_events(
    conn: asyncpg.Connection,
    history: Sequence[HistoryRecord],
    events: Sequence[OutgoingEvent],
    now: datetime,
) -> None:
    """``add_history`` and the outbox's ``add`` in one statement."""
    await conn.execute(
        HISTORY_AND_EVENTS,
        [h["task_id"] for h in history],
        *history_arrays(history),
        [h["created_at"] for h in history],
        *event_arrays(events),
        now,
    )


@functools.cache
def _array_type(key: str) -> tuple[str, str]:
    """(the array element type a tasks column's values travel as, the cast back to the
    column). JSON travels as text: SQLAlchemy's codec on these connections takes JSON text."""
    column = tasks.c[key]
    t = column.type
    if isinstance(t, sa.JSON):
        return "text", "::jsonb"
    if isinstance(t, sa.Uuid):
        return "uuid", ""
    if isinstance(t, UTCDateTime):
        return "timestamptz", ""
    if isinstance(t, sa.BigInteger):
        return "bigint", ""
    if isinstance(t, sa.Integer):
        return "int", ""
    if isinstance(t, sa.Boolean):
        return "bool", ""
    if isinstance(t, sa.String):
        return "text", ""
    raise TypeError(f"tasks.{column.name}: no array type for {t!r}")  # pragma: no cover


@functools.lru_cache(maxsize=256)
def _transition_statement(keys: tuple[str, ...]) -> str:
    """``HISTORY_AND_EVENTS`` plus the UPDATE of the tasks, every row with the same columns."""
    element = [_array_type(k) for k in keys]
    arrays = ", ".join(["$16::uuid[]", *(f"${17 + i}::{e[0]}[]" for i, e in enumerate(element))])
    names = ", ".join(["_id", *(f'"{k}"' for k in keys)])
    sets = ", ".join(f'"{k}" = v."{k}"{e[1]}' for k, e in zip(keys, element, strict=True))
    return f"""
WITH u AS (
    UPDATE tasks SET {sets}
    FROM unnest({arrays}) AS v({names})
    WHERE tasks.id = v._id
), {HISTORY_AND_EVENTS.strip().removeprefix("WITH ")}
"""


def column_value(key: str, value: Any) -> Any:
    kind, cast = _array_type(key)
    if cast == "::jsonb":
        return _json_text(value)
    if kind == "timestamptz" and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # as UTCDateTime binds it
    return value


async def transition(
    conn: asyncpg.Connection,
    updates: Sequence[tuple[uuid.UUID, dict[str, Any]]],
    history: Sequence[HistoryRecord],
    events: Sequence[OutgoingEvent],
    now: datetime,
) -> bool:
    """Tasks' new values, their history rows and events in one statement (one round trip
    instead of two, and no SQLAlchemy statement). False, with nothing written, when the
    rows do not all change the same columns or a task comes twice: the caller writes them
    the long way."""
    keys = tuple(sorted(updates[0][1])) if updates else ()
    if not keys or any(tuple(sorted(values)) != keys for _, values in updates):
        return False
    if len({task_id for task_id, _ in updates}) != len(updates):
        return False  # one UPDATE … FROM would apply only one of a task's rows
    await conn.execute(
        _transition_statement(keys),
        [h["task_id"] for h in history],
        *history_arrays(history),
        [h["created_at"] for h in history],
        *event_arrays(events),
        now,
        [task_id for task_id, _ in updates],
        *([column_value(k, values[k]) for _, values in updates] for k in keys),
    )
    return True


# The dispatch queues of several projects in one statement: each project's tasks in flight
# counted, then its queue read through ix_tasks_dispatch_queue up to its free slots (LATERAL
# joins). Rows another transaction holds (a cancel, which locks the task and then its
# project) are skipped rather than waited for: waiting would deadlock against that lock order.
DISPATCHABLE_WITHIN = """
SELECT {columns} FROM unnest(CAST(:ps AS text[])) AS p(project_id)
CROSS JOIN LATERAL (
    SELECT COALESCE((SELECT pr.max_concurrent FROM projects pr WHERE pr.project_id = p.project_id), :limit)
           - count(*) AS free FROM tasks c
    WHERE c.project_id = p.project_id AND c.status IN ({in_flight})
) AS f
CROSS JOIN LATERAL (
    SELECT * FROM tasks
    WHERE f.free > 0 AND tasks.project_id = p.project_id AND tasks.status = 'pending'
      AND tasks.routed_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM task_dependencies dep JOIN tasks blocker ON blocker.id = dep.depends_on_id
          WHERE dep.task_id = tasks.id AND blocker.status <> 'completed')
    ORDER BY tasks.priority_rank DESC, tasks.created_at, tasks.id
    LIMIT GREATEST(f.free, 0)
    FOR UPDATE OF tasks SKIP LOCKED
) AS t
"""

PROJECTS = "SELECT * FROM projects WHERE project_id = ANY($1::text[])"

LOCK_PROJECTS = (
    "SELECT pg_advisory_xact_lock(7301, hashtext(p)) "
    "FROM (SELECT unnest(CAST(:ps AS text[])) AS p ORDER BY 1) AS s"
)

# Project ``p``'s limit: its own ``max_concurrent``, else :lim (the configured one).
_LIMIT_OF_P = "COALESCE((SELECT pr.max_concurrent FROM projects pr WHERE pr.project_id = p), :lim)"
# Project ``p`` has a routed task waiting (one probe of the partial ``ix_tasks_dispatch_queue``,
# however long a queue is) and fewer than its limit in flight (the count stops at the limit):
# a dispatch could start a task there.
_ROOM_FOR_A_WAITING_TASK = (
    "EXISTS (SELECT 1 FROM tasks WHERE project_id = p AND status = 'pending' AND routed_at IS NOT NULL)"
    " AND (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE project_id = p"
    f" AND status IN ('running', 'validating') LIMIT {_LIMIT_OF_P}) AS f) < {_LIMIT_OF_P}"
)
WITH_WAITING_TASKS = f"SELECT p FROM unnest(CAST(:ps AS text[])) AS p WHERE {_ROOM_FOR_A_WAITING_TASK}"
# Every project with a pending task, one index probe each (a loose index scan over the
# dispatch queue's index), instead of reading every pending task: a backlog of a million
# tasks in a few hundred projects costs a few hundred probes.
PROJECTS_WITH_ROOM = (
    "WITH RECURSIVE w(p) AS ("
    " (SELECT project_id FROM tasks WHERE status = 'pending' ORDER BY project_id LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT t.project_id FROM tasks t WHERE t.status = 'pending' AND t.project_id > w.p"
    " ORDER BY t.project_id LIMIT 1) FROM w WHERE w.p IS NOT NULL)"
    f" SELECT p FROM w WHERE p IS NOT NULL AND {_ROOM_FOR_A_WAITING_TASK} LIMIT :n"
)


# A task.progress kept on its task (see ``TaskRepository.record_progress``): one statement,
# the heartbeat due time computed from the row's own heartbeat seconds.
RECORD_PROGRESS = """
UPDATE tasks SET progress = $2::jsonb, progress_at = $3::timestamptz,
       heartbeat_due_at = $4::timestamptz + heartbeat_seconds * interval '1 second'
WHERE id = $1 AND status = 'running' AND (progress_at IS NULL OR progress_at < $3)
  AND ($5::int IS NULL OR attempt = $5) AND ($6::text[] IS NULL OR project_id = ANY($6))
"""


# Several reports of different tasks in one statement (``PostgresHotPaths.record_progress``);
# the ids of the tasks that kept theirs come back.
RECORD_PROGRESS_MANY = """
UPDATE tasks SET progress = v.progress::jsonb, progress_at = v.at,
       heartbeat_due_at = $5::timestamptz + tasks.heartbeat_seconds * interval '1 second'
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::int[]) AS v(id, progress, at, attempt)
WHERE tasks.id = v.id AND tasks.status = 'running'
  AND (tasks.progress_at IS NULL OR tasks.progress_at < v.at)
  AND (v.attempt IS NULL OR tasks.attempt = v.attempt)
RETURNING tasks.id
"""


def progress_json(progress: Any) -> str | None:
    return _json_text(progress)
