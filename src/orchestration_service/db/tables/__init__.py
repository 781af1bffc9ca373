"""Table definitions (SQLAlchemy Core), one module per aggregate, on one shared `metadata`.

Migrations own the real schema; these mirror it. Importing this package defines every table,
so `metadata` is complete (migrations compare against it; tests truncate its tables).
"""

from __future__ import annotations

from orchestration_service.db.tables.api_keys import (
    api_keys as api_keys,
)
from orchestration_service.db.tables.events import (
    outbox as outbox,
)
from orchestration_service.db.tables.events import (
    processed_events as processed_events,
)
from orchestration_service.db.tables.events import (
    relay_progress as relay_progress,
)
from orchestration_service.db.tables.fleet import (
    dead_letters as dead_letters,
)
from orchestration_service.db.tables.fleet import (
    worker_tasks as worker_tasks,
)
from orchestration_service.db.tables.fleet import (
    workers as workers,
)
from orchestration_service.db.tables.projects import (
    project_constitutions as project_constitutions,
)
from orchestration_service.db.tables.projects import (
    projects as projects,
)
from orchestration_service.db.tables.projects import (
    projects_generation as projects_generation,
)
from orchestration_service.db.tables.provenance import (
    artifact_dependencies as artifact_dependencies,
)
from orchestration_service.db.tables.provenance import (
    checkpoints as checkpoints,
)
from orchestration_service.db.tables.provenance import (
    provenance_artifacts as provenance_artifacts,
)
from orchestration_service.db.tables.provenance import (
    provenance_records as provenance_records,
)
from orchestration_service.db.tables.provenance import (
    provenance_unresolved_inputs as provenance_unresolved_inputs,
)
from orchestration_service.db.tables.provenance import (
    taint_cascades as taint_cascades,
)
from orchestration_service.db.tables.provenance import (
    taint_events as taint_events,
)
from orchestration_service.db.tables.reviews import (
    reviews as reviews,
)
from orchestration_service.db.tables.tasks import (
    task_dependencies as task_dependencies,
)
from orchestration_service.db.tables.tasks import (
    task_history as task_history,
)
from orchestration_service.db.tables.tasks import (
    tasks as tasks,
)
from orchestration_service.db.tables.types import (
    BigIntPK as BigIntPK,
)
from orchestration_service.db.tables.types import (
    JSONType as JSONType,
)
from orchestration_service.db.tables.types import (
    UTCDateTime as UTCDateTime,
)
from orchestration_service.db.tables.types import (
    json_col as json_col,
)
from orchestration_service.db.tables.types import (
    metadata as metadata,
)
