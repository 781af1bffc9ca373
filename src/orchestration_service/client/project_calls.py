"""The project routes as ``Call``s (see ``calls``): the project, its constitution and
status, its provenance health and checkpoints.

Which writes are resent after a lost answer (``idempotent``), here and in ``calls``: those
whose repeat changes nothing more AND answers what the first try would have. A repeat that
would answer differently (a 404 for the letter this call removed, a 409 for the project it
created) is not resent: the caller sees the lost answer as ``TransportFailed`` or
``ServerError`` and can look, instead of being told something false.
"""

from __future__ import annotations

from typing import Any

from orchestration_service.client import project_models as pm
from orchestration_service.client.calls import Call, model, segment


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a field not given (None is a value: it clears the field)


def list_projects(*, include_archived: bool | None = None) -> Call[pm.ProjectList]:
    return Call("GET", "/projects", model(pm.ProjectList), params={"include_archived": include_archived})


def create_project(
    project_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    constitution: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Call[pm.Project]:
    """``settings``: max_concurrent, default_priority, default_qa_profile,
    timeout_default_seconds, max_attempts_default (unset ones follow the configuration)."""
    body: dict[str, Any] = {"project_id": project_id}
    extra = {"name": name, "description": description, "constitution": constitution, "settings": settings}
    body |= {k: v for k, v in extra.items() if v is not None}
    # Not resent: a creation that went through answers 409 to its retry (catch ``Conflict``
    # and ``get_project`` for "make sure it exists").
    return Call("POST", "/projects", model(pm.Project), body=body, idempotent=False)


def get_project(project_id: str) -> Call[pm.Project]:
    return Call("GET", f"/projects/{segment(project_id)}", model(pm.Project))


def update_project(
    project_id: str,
    *,
    name: str | None = UNSET,
    description: str | None = UNSET,
    constitution: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Call[pm.Project]:
    """Only what is given changes: ``name=None`` clears the name; a setting given as None
    falls back to the configuration; ``constitution`` (text) becomes its next version."""
    given = {"name": name, "description": description}
    body: dict[str, Any] = {k: v for k, v in given.items() if v is not UNSET}
    if constitution is not None:
        body["constitution"] = constitution
    if settings is not None:
        body["settings"] = settings
    # Setting fields to values is safe to repeat; a constitution is not: each PATCH that
    # carries one adds a version, so a retry would add a second, identical one.
    path = f"/projects/{segment(project_id)}"
    return Call("PATCH", path, model(pm.Project), body=body, idempotent=constitution is None)


def archive_project(project_id: str) -> Call[pm.Project]:
    """DELETE archives (409 while the project has unfinished tasks)."""
    # Safe to repeat: archiving an archived project answers it again, unchanged.
    return Call("DELETE", f"/projects/{segment(project_id)}", model(pm.Project))


def get_constitution(project_id: str, version: int | None = None) -> Call[pm.Constitution]:
    """The current version, or version ``version`` (404 if there is none)."""
    path = f"/projects/{segment(project_id)}/constitution"
    return Call("GET", path, model(pm.Constitution), params={"version": version})


def project_status(project_id: str) -> Call[pm.ProjectStatus]:
    return Call("GET", f"/projects/{segment(project_id)}/status", model(pm.ProjectStatus))


def consistency(project_id: str) -> Call[pm.Consistency]:
    return Call("GET", f"/projects/{segment(project_id)}/consistency", model(pm.Consistency))


def checkpoints(
    project_id: str,
    *,
    include_invalid: bool | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Call[pm.CheckpointPage]:
    params = {"include_invalid": include_invalid, "limit": limit, "offset": offset}
    path = f"/projects/{segment(project_id)}/checkpoints"
    return Call("GET", path, model(pm.CheckpointPage), params=params)


def create_checkpoint(
    project_id: str,
    *,
    git_ref: str | None = None,
    rag_state_ref: str | None = None,
    work_product_ref: str | None = None,
    description: str | None = None,
    trigger: str | None = None,
) -> Call[pm.Checkpoint]:
    """``trigger``: auto, manual (the default) or milestone."""
    fields = {
        "git_ref": git_ref,
        "rag_state_ref": rag_state_ref,
        "work_product_ref": work_product_ref,
        "description": description,
        "trigger": trigger,
    }
    body = {k: v for k, v in fields.items() if v is not None}
    # Not resent: each request records one more checkpoint.
    path = f"/projects/{segment(project_id)}/checkpoints"
    return Call("POST", path, model(pm.Checkpoint), body=body, idempotent=False)
