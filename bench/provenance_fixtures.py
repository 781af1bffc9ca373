"""Legacy provenance directories for tests and benchmarks: N records in the monolith's file
layout (``<id>.json``, ``taint_events.json``, ``checkpoints.json``) with a realistic graph.

Each project is a sequence of features (20-80 records). A feature starts with a hub record
(an architecture document) that builds on the previous feature's hub; within a feature,
records extend a chain (the previous record), join two earlier ones (diamonds), fan out
from the hub, or reference an older record of the project. Some records are in the older
flat form only, a few have outputs without artifact ids, some carry unknown fields; 0.5 %
are tainted, their direct dependents suspect. Deterministic for a given seed.

    python -m bench.provenance_fixtures DIR N [--projects 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from orchestration_service.domain.vocabulary import QA_PROFILES

BASE_TIME = datetime(2025, 6, 1, 8, 0, 0)
MODELS = ("gemma3:12b", "qwen2.5-coder:7b", "llama3.1:70b", "claude-sonnet", "phi3:mini")
TYPES = ("code", "document", "config", "analysis", "architecture")


@dataclass(slots=True)
class _Project:
    name: str
    records: list[tuple[str, list[str], bool]] = field(default_factory=list)  # id, artifacts, tainted
    feature_start: int = 0
    feature_end: int = 0
    hub: int | None = None
    previous_hub: int | None = None
    artifacts: int = 0
    checkpoints: int = 0


def _ts(value: datetime) -> str:
    return value.isoformat()


def generate(directory: Path, n: int, *, projects: int = 10, seed: int = 0) -> None:
    """Write ``n`` legacy records (spread over ``projects`` projects) into ``directory``."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    state = [_Project(f"proj-{p:03d}") for p in range(max(1, projects))]
    events: list[dict[str, Any]] = []
    saved_checkpoints: dict[str, Any] = {}

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    for i in range(n):
        project = state[i % len(state)]
        k = len(project.records)
        if k >= project.feature_end:
            project.feature_start = k
            project.feature_end = k + rng.randint(20, 80)
            project.previous_hub, project.hub = project.hub, k
        record_id = new_id()
        created = BASE_TIME + timedelta(seconds=3 * i, microseconds=rng.randint(0, 999_999))
        inputs: list[tuple[int, str]] = []  # (position, relationship)
        if k == project.feature_start:
            if project.previous_hub is not None:
                inputs.append((project.previous_hub, "consumed"))
            if k > 0 and rng.random() < 0.5:
                inputs.append((k - 1, "referenced"))
        else:
            roll = rng.random()
            if roll < 0.45:
                inputs.append((k - 1, "consumed"))
            elif roll < 0.65:
                a, b = rng.randint(project.feature_start, k - 1), rng.randint(project.feature_start, k - 1)
                inputs += [(a, "consumed"), (b, "consumed")] if a != b else [(a, "consumed")]
            elif roll < 0.85:
                inputs.append((project.feature_start, "consumed"))
                if rng.random() < 0.5:
                    inputs.append((k - 1, "consumed"))
            elif roll < 0.95:
                inputs.append((rng.randint(0, k - 1), "referenced"))
        artifact_ids = [f"art-{record_id[:8]}-{j}" for j in range(rng.choices((1, 2, 3), (70, 20, 10))[0])]
        used: dict[str, str] = {}
        upstream_tainted: str | None = None
        for position, relationship in inputs:
            _, produced, was_tainted = project.records[position]
            if produced:
                used.setdefault(rng.choice(produced), relationship)
                if was_tainted and upstream_tainted is None:
                    upstream_tainted = produced[0]
        tainted = rng.random() < 0.005
        doc = _record(
            rng,
            record_id,
            project.name,
            created,
            artifact_ids,
            used,
            tainted=tainted,
            suspect_of=None if tainted else upstream_tainted,
        )
        style = rng.random()
        if style < 0.03:
            # The oldest files: outputs without artifact ids, flat fields only.
            doc = _flat(doc)
            for output in doc["outputs"]:
                output.pop("artifact_id", None)
            artifact_ids = []
        elif style < 0.15:
            doc = _flat(doc)
        if rng.random() < 0.05:
            doc["legacy_tags"] = ["imported", f"batch-{i // 1000}"]
            doc["notes"] = {"reviewer": "ops", "ticket": f"DATS-{rng.randint(100, 999)}"}
        if tainted or doc.get("taint", {}).get("is_suspect"):
            events.extend(_events(rng, doc, new_id))
        (directory / f"{record_id}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        project.records.append((record_id, artifact_ids, tainted))
        project.artifacts += len(artifact_ids)
        if len(project.records) % 1000 == 0:
            project.checkpoints += 1
            checkpoint_id = new_id()
            saved_checkpoints[checkpoint_id] = {
                "id": checkpoint_id,
                "project_id": project.name,
                "created_at": _ts(created + timedelta(milliseconds=1)),
                "git_ref": f"refs/tags/{project.name}-cp{project.checkpoints}",
                "provenance_count": len(project.records),
                "artifact_count": project.artifacts,
                "last_provenance_id": record_id,
                "last_task_id": doc["task_id"],
                "rag_state_ref": f"rag://{project.name}/snapshots/{project.checkpoints}",
                "work_product_ref": f"s3://dats-work/{project.name}/{project.checkpoints}.tar.zst",
                "description": f"checkpoint {project.checkpoints} of {project.name}",
                "trigger": ("auto", "manual", "milestone")[project.checkpoints % 3],
                "is_valid": project.checkpoints % 7 != 0,
            }
    (directory / "taint_events.json").write_bytes(orjson.dumps(events, option=orjson.OPT_INDENT_2))
    (directory / "checkpoints.json").write_bytes(orjson.dumps(saved_checkpoints, option=orjson.OPT_INDENT_2))


def _record(
    rng: random.Random,
    record_id: str,
    project: str,
    created: datetime,
    artifact_ids: list[str],
    used: dict[str, str],
    *,
    tainted: bool,
    suspect_of: str | None,
) -> dict[str, Any]:
    started = created - timedelta(milliseconds=rng.randint(500, 120_000))
    model = rng.choice(MODELS)
    worker = f"worker-{rng.randint(1, 40)}"
    tokens_in, tokens_out = rng.randint(50, 8000), rng.randint(20, 6000)
    elapsed = int((created - started).total_seconds() * 1000)
    confidence = round(rng.uniform(0.55, 0.99), 2)
    status = (
        "tainted"
        if tainted
        else rng.choices(("passed", "human_approved", "pending", "failed"), (80, 8, 8, 4))[0]
    )
    template = {"name": rng.choice(("code-gen", "doc-writer", "refactor", "analysis")), "version": "1.2"}
    details = {"checks": rng.randint(1, 6), "confidence": confidence}
    return {
        "id": record_id,
        "task_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "project_id": project,
        "outputs": [
            {
                "artifact_id": a,
                "type": rng.choice(TYPES),
                "location": f"{project}/src/{a}.py",
                "checksum": f"sha256:{rng.getrandbits(64):016x}",
                "size_bytes": rng.randint(100, 50_000),
            }
            for a in artifact_ids
        ],
        "inputs": [
            {"artifact_id": a, "relationship": rel, "version_at_consumption": f"v{rng.randint(1, 5)}"}
            for a, rel in used.items()
        ],
        "inputs_consumed": list(used),
        "execution": {
            "model": model,
            "worker_id": worker,
            "prompt_template": {**template, "hash": f"{rng.getrandbits(32):08x}"},
            "parameters": {"temperature": round(rng.uniform(0, 1), 1), "max_tokens": 4096},
        },
        "model_used": model,
        "worker_id": worker,
        "prompt_template": template,
        "verification": {
            "status": status,
            "qa_profile": rng.choice(QA_PROFILES),
            "qa_result_id": f"qa-{rng.getrandbits(40):010x}",
            "verified_at": _ts(created),
            "verified_by": "qa-service",
            "details": details,
        },
        "confidence": confidence,
        "verification_status": status,
        "verification_details": details,
        "taint": {
            "is_tainted": tainted,
            "tainted_at": _ts(created + timedelta(hours=2)) if tainted else None,
            "tainted_reason": "security vulnerability found in review" if tainted else None,
            "tainted_by": "security-scan" if tainted else None,
            "is_suspect": suspect_of is not None,
            "suspect_since": _ts(created + timedelta(hours=2)) if suspect_of else None,
            "suspect_source": suspect_of,
        },
        "created_at": _ts(created),
        "started_at": _ts(started),
        "completed_at": _ts(created),
        "metrics": {"tokens_input": tokens_in, "tokens_output": tokens_out, "execution_time_ms": elapsed},
        "tokens_input": tokens_in,
        "tokens_output": tokens_out,
        "execution_time_ms": elapsed,
    }


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    """The older flat form: no structured execution, verification, metrics or inputs."""
    for key in ("execution", "verification", "metrics", "inputs"):
        doc.pop(key, None)
    return doc


def _events(rng: random.Random, doc: dict[str, Any], new_id: Any) -> list[dict[str, Any]]:
    taint = doc["taint"]
    artifacts = [o.get("artifact_id") or doc["id"] for o in doc["outputs"]] or [doc["id"]]
    when = taint["tainted_at"] or taint["suspect_since"]
    out = []
    for art in artifacts:
        out.append(
            {
                "id": new_id(),
                "timestamp": when,
                "artifact_id": art,
                "provenance_id": doc["id"],
                "reason": taint["tainted_reason"] or f"depends on tainted {taint['suspect_source']}",
                "source_artifact_id": None if taint["is_tainted"] else taint["suspect_source"],
                "source_provenance_id": None,
                "cascade_depth": 0 if taint["is_tainted"] else 1,
                "cascade_id": f"casc-{(taint['suspect_source'] or art)}",
                "action": "taint" if taint["is_tainted"] else "suspect",
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("n", type=int, help="number of records")
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generate(args.directory, args.n, projects=args.projects, seed=args.seed)


if __name__ == "__main__":
    main()
