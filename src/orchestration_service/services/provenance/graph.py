"""The dependency graph's answers: lineage (upstream), impact (downstream, and the tasks that
wait on it) and root cause. Each takes a project scope (``project_ids``; None = all): a
record of another project answers exactly as if it did not exist."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.provenance import primary_artifact
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance.port import Edge, GraphNode, WaitingTask
from orchestration_service.services.provenance.common import (
    DEFAULT_GRAPH_LIMIT,
    DEFAULT_MAX_DEPTH,
    IN_FLIGHT,
    artifact_ids,
    parse_record_id,
    visible,
)


def node(n: GraphNode, ids: list[str] | None = None) -> dict[str, Any]:
    """A record in a graph answer (``ids``: its artifact ids, when already known). The hot
    loop of lineage and impact: one dict per listed record."""
    return {
        "id": n.id,
        "task_id": n.task_id,
        "project_id": n.project_id,
        "created_at": n.created_at,
        "verification_status": n.verification_status,
        "is_tainted": n.is_tainted,
        "is_suspect": n.is_suspect,
        "artifact_ids": artifact_ids(n.outputs) if ids is None else ids,
        "depth": n.depth,
    }


def _scoped(
    nodes: Sequence[GraphNode], record_id: uuid.UUID | str, project_ids: Sequence[str] | None
) -> tuple[GraphNode, Sequence[GraphNode]]:
    """The root (the first node, at depth 0) and the nodes in scope; NotFound when the root
    does not exist or is out of scope. The walk itself is unscoped (a path may pass through
    another project); the answer is scoped."""
    if not nodes or nodes[0].depth != 0 or not visible(nodes[0].project_id, project_ids):
        raise NotFound(f"provenance record {record_id} does not exist")
    if project_ids is None:
        return nodes[0], nodes
    scope = set(project_ids)
    return nodes[0], [n for n in nodes if n.project_id in scope]


class GraphQueries:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def lineage(
        self,
        record_id: uuid.UUID | str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        limit: int = DEFAULT_GRAPH_LIMIT,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Every record upstream (the records whose artifacts this one used, theirs, …): the
        nearest ``limit`` of them."""
        rid = parse_record_id(record_id)
        # ``listed``: outputs of the nodes the answer lists; a scope may drop some of the
        # nearest, so then every node's.
        async with self.storage.read() as uow:
            walk = await uow.provenance.graph(
                rid, "up", max_depth, listed=limit if project_ids is None else None
            )
        root, reached = _scoped(walk.nodes, record_id, project_ids)
        upstream = [n for n in reached if n.depth > 0]
        return {
            "provenance_id": root.id,
            "artifact_ids": artifact_ids(root.outputs),
            "depth_limit": max_depth,
            "max_depth": upstream[-1].depth if upstream else 0,
            "truncated": walk.truncated or len(upstream) > limit,
            "total": len(upstream),
            "limit": limit,
            "items": [node(n) for n in upstream[:limit]],
        }

    async def impact(
        self,
        record_id: uuid.UUID | str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        limit: int = DEFAULT_GRAPH_LIMIT,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Every record downstream, and the unfinished tasks that wait on any of them; each
        list holds at most ``limit`` entries (the nearest records first)."""
        rid = parse_record_id(record_id)
        async with self.storage.read() as uow:
            repo = uow.provenance
            if project_ids is None:
                # Unscoped (the usual case): one call, which reads only the listed records.
                found = await repo.impact(rid, max_depth, listed=limit, statuses=IN_FLIGHT)
                if not found.nodes:
                    raise NotFound(f"provenance record {record_id} does not exist")
                return _impact(
                    found.nodes[0],
                    found.nodes[1:],
                    total=found.total,
                    deepest=found.max_depth,
                    cut=found.truncated,
                    waiting=found.waiting,
                    by_project=found.in_flight_by_project,
                    max_depth=max_depth,
                    limit=limit,
                )
            walk = await repo.graph(rid, "down", max_depth, listed=None)
            root, reached = _scoped(walk.nodes, record_id, project_ids)
            waiting = await repo.waiting_tasks([n.id for n in reached], IN_FLIGHT, project_ids)
            projects = sorted({n.project_id for n in reached})
            by_project = await repo.in_flight_by_project(projects, IN_FLIGHT)
        affected = [n for n in reached if n.depth > 0]
        return _impact(
            root,
            affected[:limit],
            total=len(affected),
            deepest=affected[-1].depth if affected else 0,
            cut=walk.truncated,
            waiting=waiting,
            by_project=by_project,
            max_depth=max_depth,
            limit=limit,
        )

    async def root_cause(
        self,
        record_id: uuid.UUID | str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The legacy root-cause analysis: of the tainted records upstream (and the record
        itself), ``immediate_cause`` is the nearest, ``root_cause`` the earliest created;
        ``path`` runs from the root cause's artifact down to the failed one (the artifact
        through which each step depended on the previous), ``depth`` = its number of edges."""
        rid = parse_record_id(record_id)
        async with self.storage.read() as uow:
            repo = uow.provenance
            root = await repo.summary(rid)
            if root is None or not visible(root.project_id, project_ids):
                raise NotFound(f"provenance record {record_id} does not exist")
            failed = primary_artifact(root.outputs, root.id)
            # The walk stays in the record's project: neither a cause nor a step of the path
            # is another project's record (an edge into one can only be legacy data).
            rows = await repo.reached_tainted(rid, "up", max_depth, root.project_id)
            tainted = [r for r in rows if r.is_tainted and visible(r.project_id, project_ids)]
            answer: dict[str, Any] = {
                "failed_artifact_id": failed,
                "failed_provenance_id": root.id,
                "immediate_cause": None,
                "immediate_cause_provenance_id": None,
                "root_cause": None,
                "root_cause_provenance_id": None,
                "path": [],
                "path_provenance_ids": [],
                "depth": 0,
            }
            if not tainted:
                return answer
            nearest = min(tainted, key=lambda r: (r.depth, r.created_at, str(r.id)))
            earliest = min(tainted, key=lambda r: (r.created_at, -r.depth, str(r.id)))
            depth_of = {r.id: r.depth for r in rows}
            edges = await repo.edges_between([r.id for r in rows if r.depth < earliest.depth])
        # Walk back down from the root cause along edges whose depth decreases by one.
        by_dependency: dict[Any, list[Edge]] = {}
        for e in edges:
            by_dependency.setdefault(e.depends_on, []).append(e)
        records = [earliest.id]
        path: list[str] = []
        current = earliest.id
        for level in range(earliest.depth - 1, -1, -1):
            step = min(
                (e for e in by_dependency.get(current, []) if depth_of.get(e.artifact_id) == level),
                key=lambda e: str(e.artifact_id),
            )
            path.append(step.via_artifact_id or primary_artifact(None, current))
            current = step.artifact_id
            records.append(current)
        path.append(failed)
        answer.update(
            {
                "immediate_cause": primary_artifact(nearest.outputs, nearest.id),
                "immediate_cause_provenance_id": nearest.id,
                "root_cause": path[0] if earliest.depth > 0 else failed,
                "root_cause_provenance_id": earliest.id,
                "path": path if earliest.depth > 0 else [failed],
                "path_provenance_ids": records,
                "depth": earliest.depth,
            }
        )
        return answer


def _impact(
    root: GraphNode,
    listed: Sequence[GraphNode],
    *,
    total: int,
    deepest: int,
    cut: bool,
    waiting: Sequence[WaitingTask],
    by_project: dict[str, int],
    max_depth: int,
    limit: int,
) -> dict[str, Any]:
    """The impact answer: ``listed``, the nearest ``limit`` of the ``total`` records below."""
    # Only the listed records' artifacts are parsed: the lists end where ``items`` does.
    listed = listed[:limit]
    artifacts = [artifact_ids(n.outputs) for n in listed]
    direct = [a for n, ids in zip(listed, artifacts, strict=True) if n.depth == 1 for a in ids]
    transitive = [a for n, ids in zip(listed, artifacts, strict=True) if n.depth > 1 for a in ids]
    root_artifacts = artifact_ids(root.outputs)
    truncated = total > limit or len(direct) > limit or len(transitive) > limit or len(waiting) > limit
    return {
        "provenance_id": root.id,
        "artifact_id": root_artifacts[0] if root_artifacts else str(root.id),
        "artifact_ids": root_artifacts,
        "direct_dependents": direct[:limit],
        "transitive_dependents": transitive[:limit],
        "total_affected": total,
        "depth_limit": max_depth,
        "max_depth": deepest,
        "truncated": cut or truncated,
        "limit": limit,
        "items": [node(n, ids) for n, ids in zip(listed, artifacts, strict=True)],
        "tasks_in_flight": [
            {"task_id": t.id, "project_id": t.project_id, "status": t.status} for t in waiting[:limit]
        ],
        "in_flight_by_project": by_project,
    }
