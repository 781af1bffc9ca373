"""Legacy provenance files in and out of the database, on SQLite and PostgreSQL: the CLI's
per-file failures and exit codes, idempotent re-import, a field-by-field lossless round trip
(structured and flat fields, unknown fields, legacy timestamps), the graph rebuilt from both
input forms, and an export after the store changed a record."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from bench.provenance_fixtures import generate
from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.config import StorageSettings
from orchestration_service.db.engine import Database, create_admin_engine
from orchestration_service.db.tables import (
    artifact_dependencies,
    checkpoints,
    provenance_artifacts,
    provenance_records,
    taint_events,
)
from orchestration_service.domain.provenance import canonical_json
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.services.provenance.legacy_export import export_directory
from orchestration_service.services.provenance.legacy_import import import_directory
from orchestration_service.services.provenance.taint import TaintCascade
from tests.conftest import Service, truncate_all
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.integration.test_tasks_api import wait_for_status
from tests.process import BIN

BASE = "11111111-1111-4111-8111-000000000001"
OLDEST = "11111111-1111-4111-8111-000000000002"
STRUCTURED = "11111111-1111-4111-8111-000000000003"
CHILD = "11111111-1111-4111-8111-000000000004"
ODD = "11111111-1111-4111-8111-000000000005"


def legacy_records() -> dict[str, dict[str, Any]]:
    return {
        # The older flat form only: flat inputs, top-level model/tokens/verification status.
        BASE: {
            "id": BASE,
            "task_id": "task-base",
            "project_id": "proj-m",
            "outputs": [{"artifact_id": "art-base", "type": "architecture", "location": "docs/arch.md"}],
            "inputs_consumed": [],
            "model_used": "gemma3:12b",
            "worker_id": "worker-1",
            "prompt_template": {"name": "arch", "version": "1"},
            "confidence": 0.873,
            "verification_status": "passed",
            "verification_details": {"checks": 2},
            "created_at": "2026-01-09T18:00:00",
            "started_at": "2026-01-09T17:59:00",
            "completed_at": "2026-01-09T18:00:00",
            "tokens_input": 120,
            "tokens_output": 340,
            "execution_time_ms": 900,
        },
        # The oldest files: outputs without artifact ids, a flat input.
        OLDEST: {
            "id": OLDEST,
            "task_id": "task-oldest",
            "project_id": "proj-m",
            "outputs": [{"type": "code", "location": "legacy.py", "checksum": "md5:1"}],
            "inputs_consumed": ["art-base"],
            "model_used": "phi3",
            "created_at": "2026-01-09T18:00:01.5",
        },
        # Structured and flat side by side, disagreeing; unknown fields; a referenced input
        # nobody produced.
        STRUCTURED: {
            "id": STRUCTURED,
            "task_id": "task-structured",
            "project_id": "proj-m",
            "tier": "small",
            "outputs": [
                {
                    "artifact_id": "art-s1",
                    "type": "code",
                    "location": "src/s1.py",
                    "checksum": "sha256:aa",
                    "size_bytes": 10,
                },
                {
                    "artifact_id": "art-s2",
                    "type": "config",
                    "location": "s2.yaml",
                    "checksum": "",
                    "size_bytes": 0,
                },
            ],
            "inputs": [
                {"artifact_id": "art-base", "relationship": "consumed", "version_at_consumption": "v1"},
                {"artifact_id": "art-external", "relationship": "referenced", "version_at_consumption": ""},
            ],
            "inputs_consumed": ["art-base"],
            "execution": {
                "model": "new-model",
                "worker_id": "worker-9",
                "prompt_template": {"name": "code", "version": "2", "hash": "abc"},
                "parameters": {"temperature": 0.2},
            },
            "model_used": "old-model",
            "worker_id": "worker-9",
            "prompt_template": {"name": "code", "version": "2"},
            "verification": {
                "status": "human_approved",
                "qa_profile": "human",
                "qa_result_id": "qa-1",
                "verified_at": "2026-01-09T18:05:00.123456",
                "verified_by": "bob",
                "details": {"confidence": 0.9, "notes": "ok"},
            },
            "confidence": 0.9,
            "verification_status": "human_approved",
            "verification_details": {"confidence": 0.9, "notes": "ok"},
            "taint": {
                "is_tainted": False,
                "tainted_at": None,
                "tainted_reason": None,
                "tainted_by": None,
                "is_suspect": False,
                "suspect_since": None,
                "suspect_source": None,
            },
            "created_at": "2026-01-09T18:05:00.000001",
            "started_at": None,
            "completed_at": "2026-01-09T18:05:00.000001",
            "metrics": {"tokens_input": 1, "tokens_output": 2, "execution_time_ms": 3},
            "tokens_input": 1,
            "tokens_output": 2,
            "execution_time_ms": 3,
            "legacy_tags": ["migrated", 3],
            "review": {"nested": {"deep": [1, 2.5, None, True]}},
        },
        # Depends on art-s2 through the flat field only.
        CHILD: {
            "id": CHILD,
            "task_id": "task-child",
            "project_id": "proj-n",
            "outputs": [{"artifact_id": "art-child", "type": "document", "location": "README.md"}],
            "inputs_consumed": ["art-s2"],
            "verification_status": "pending",
            "created_at": "2026-01-10T09:00:00",
            "taint": {"is_suspect": True, "suspect_since": "2026-01-10T10:00:00", "suspect_source": "art-s2"},
        },
        # Odd values: an unknown status, an aware timestamp, huge numbers, an unknown relationship.
        ODD: {
            "id": ODD.upper(),
            "task_id": "task-odd",
            "project_id": "proj-m",
            "outputs": [{"artifact_id": "art-odd", "type": "binary"}],
            "inputs": [{"artifact_id": "art-base", "relationship": "inspired-by"}],
            "verification_status": "weird",
            "confidence": 42,
            "tokens_input": 2**40,
            "created_at": "2026-01-11T00:00:00Z",
            "model_used": "m" * 150,
        },
    }


TAINT_EVENTS = [
    {
        "id": "te-1",
        "timestamp": "2026-01-10T10:00:00",
        "artifact_id": "art-s2",
        "provenance_id": STRUCTURED,
        "reason": "bad config",
        "source_artifact_id": None,
        "source_provenance_id": None,
        "cascade_depth": 0,
        "cascade_id": "casc-legacy",
        "action": "taint",
    },
    {
        "id": "te-2",
        "timestamp": "2026-01-10T10:00:00",
        "artifact_id": "art-child",
        "provenance_id": CHILD,
        "reason": "depends on tainted art-s2",
        "source_artifact_id": "art-s2",
        "source_provenance_id": STRUCTURED,
        "cascade_depth": 1,
        "cascade_id": "casc-legacy",
        "action": "suspect",
        "project_id": "proj-n",
        "operator": "cascade-v1",
    },
    {"timestamp": "2026-01-10T10:00:00", "action": "taint"},  # no id: reported, skipped
]

CHECKPOINTS = {
    "cp-1": {
        "id": "cp-1",
        "project_id": "proj-m",
        "created_at": "2026-01-09T18:02:00",
        "git_ref": "abc123",
        "provenance_count": 2,
        "artifact_count": 1,
        "last_provenance_id": OLDEST,
        "last_task_id": "task-oldest",
        "rag_state_ref": "rag://1",
        "work_product_ref": "s3://1",
        "description": "first",
        "trigger": "milestone",
        "is_valid": True,
    },
    "cp-2": {
        "project_id": "proj-m",
        "created_at": "2026-01-12T00:00:00",
        "trigger": "nightly",
        "is_valid": False,
    },
    "cp-3": "not an object",
}

BAD_FILES = {
    "broken.json": b"{not json",
    "a-list.json": b"[1, 2, 3]",
    "no-id.json": b'{"task_id": "t"}',
    "bad-id.json": b'{"id": "123", "task_id": "t"}',
}


def write_legacy(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rid, doc in legacy_records().items():
        (directory / f"{rid}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    (directory / "taint_events.json").write_bytes(orjson.dumps(TAINT_EVENTS))
    (directory / "checkpoints.json").write_bytes(orjson.dumps(CHECKPOINTS))
    for name, content in BAD_FILES.items():
        (directory / name).write_bytes(content)


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {"ORCH_DATABASE_URL": database_url, "ORCH_CONFIG": os.environ["ORCH_CONFIG"], "COLUMNS": "200"}
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)


async def dump(url: str) -> dict[str, list[Any]]:
    """Every provenance table, rows sorted, values as JSON (what must survive a round trip)."""
    engine = create_async_engine(url)
    tables = {
        "records": (provenance_records, "id"),
        "artifacts": (provenance_artifacts, "artifact_id"),
        "dependencies": (artifact_dependencies, "artifact_id"),
        "taint_events": (taint_events, "id"),
        "checkpoints": (checkpoints, "id"),
    }
    out: dict[str, list[Any]] = {}
    try:
        async with engine.connect() as conn:
            for name, (table, _key) in tables.items():
                columns = [c for c in table.columns if c.name not in ("id",) or name != "dependencies"]
                rows = (await conn.execute(sa.select(*columns))).mappings().all()
                out[name] = sorted(
                    orjson.dumps({str(k): v for k, v in r.items()}, default=str, option=orjson.OPT_SORT_KEYS)
                    for r in rows
                )
    finally:
        await engine.dispose()
    return out


def read(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def same(a: Any, b: Any) -> bool:
    return canonical_json(a) == canonical_json(b)


async def test_cli_import_reports_bad_files_is_idempotent_and_round_trips(
    clean_db: str, tmp_path: Path
) -> None:
    legacy = tmp_path / "legacy"
    write_legacy(legacy)
    r = run_cli(clean_db, "provenance", "import", str(legacy))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    failures = sorted(
        line.split(": unexpected")[0] for line in r.stderr.splitlines() if line.startswith("failed: ")
    )
    assert failures == [
        "failed: a-list.json: a record must be a JSON object, not list",
        "failed: bad-id.json: id '123' is not a UUID",
        "failed: broken.json: not JSON",
        "failed: checkpoints.json['cp-3']: a checkpoint must be an object, not str",
        "failed: no-id.json: the record has no id",
        "failed: taint_events.json[2]: the taint event has no id",
    ]
    assert "records: 5 new, 0 updated, 0 unchanged" in r.stdout
    assert "taint events: 2 new" in r.stdout and "checkpoints: 2 new" in r.stdout
    assert "6 failed" in r.stdout and "could not be imported" in r.stderr
    assert "importing: 9/9 record files" in r.stderr  # not a terminal: progress lines
    first = await dump(clean_db)

    # The columns a query needs, from whichever form the file had.
    engine = create_async_engine(clean_db)
    try:
        async with engine.connect() as conn:
            rows = {
                str(r["id"]): r for r in (await conn.execute(sa.select(provenance_records))).mappings().all()
            }
            edges = {
                (str(e["artifact_id"]), str(e["depends_on"]), e["via_artifact_id"], e["dependency_type"])
                for e in (await conn.execute(sa.select(artifact_dependencies))).mappings()
            }
            produced = {
                (p, a): rid
                for p, a, rid in (
                    await conn.execute(
                        sa.select(
                            provenance_artifacts.c.project_id,
                            provenance_artifacts.c.artifact_id,
                            provenance_artifacts.c.provenance_id,
                        )
                    )
                ).all()
            }
    finally:
        await engine.dispose()
    base = rows[BASE]
    assert base["model_used"] == "gemma3:12b" and base["worker_id"] == "worker-1"
    assert (
        base["tokens_input"] == 120 and base["execution_time_ms"] == 900 and float(base["confidence"]) == 0.87
    )
    assert base["verification_status"] == "passed" and base["verification"]["details"]["checks"] == 2
    assert base["execution"]["prompt_template"] == {"name": "arch", "version": "1"}
    structured = rows[STRUCTURED]
    assert structured["model_used"] == "new-model" and structured["tier"] == "small"  # structured wins
    assert structured["verification_status"] == "human_approved" and structured["tokens_output"] == 2
    assert rows[CHILD]["is_suspect"] and rows[CHILD]["suspect_source"] == "art-s2"
    odd = rows[ODD.lower()]
    assert (
        odd["verification_status"] == "pending" and odd["confidence"] is None and odd["tokens_input"] is None
    )
    assert odd["created_at"].isoformat().startswith("2026-01-11T00:00:00") and len(odd["model_used"]) == 100
    assert edges == {
        (OLDEST, BASE, "art-base", "consumed"),
        (STRUCTURED, BASE, "art-base", "consumed"),
        (ODD.lower(), BASE, "art-base", "consumed"),
    }  # not (CHILD, STRUCTURED): art-s2 of proj-m is not the art-s2 proj-n's child used
    assert {k: str(p) for k, p in produced.items()} == {
        ("proj-m", "art-base"): BASE,
        ("proj-m", "art-s1"): STRUCTURED,
        ("proj-m", "art-s2"): STRUCTURED,
        ("proj-n", "art-child"): CHILD,
        ("proj-m", "art-odd"): ODD.lower(),
    }

    again = run_cli(clean_db, "provenance", "import", str(legacy))
    assert again.returncode == 1
    assert "records: 0 new, 0 updated, 5 unchanged" in again.stdout
    assert "taint events: 0 new, 0 updated, 2 unchanged" in again.stdout
    assert "checkpoints: 0 new, 0 updated, 2 unchanged" in again.stdout
    assert await dump(clean_db) == first

    out = tmp_path / "export"
    r = run_cli(clean_db, "provenance", "export", str(out))
    assert r.returncode == 0, r.stderr
    assert "exported 5 records, 2 taint events, 2 checkpoints" in r.stdout
    originals = legacy_records()
    exported = {p.name for p in out.iterdir()}
    assert exported == {
        *(f"{rid}.json" for rid in (BASE, OLDEST, STRUCTURED, CHILD)),
        f"{ODD.upper()}.json",
        "taint_events.json",
        "checkpoints.json",
    }
    for rid, doc in originals.items():
        back = read(out / f"{doc['id']}.json")
        for key in doc.keys() | back.keys():  # field by field, types included
            assert same(back.get(key, "<absent>"), doc.get(key, "<absent>")), (
                rid,
                key,
                back.get(key),
                doc.get(key),
            )
    assert same(read(out / "taint_events.json"), TAINT_EVENTS[:2])
    assert same(read(out / "checkpoints.json"), {k: v for k, v in CHECKPOINTS.items() if k != "cp-3"})

    # import -> export -> import: the same database.
    await truncate_all(clean_db)
    r = run_cli(clean_db, "provenance", "import", str(out))
    assert r.returncode == 0, r.stderr
    assert await dump(clean_db) == first

    # A file that changed is updated (the file wins); refusing to export over existing files.
    changed = copy.deepcopy(originals[BASE])
    changed["worker_id"] = "worker-2"
    (out / f"{BASE}.json").write_bytes(orjson.dumps(changed))
    r = run_cli(clean_db, "provenance", "import", str(out))
    assert "records: 0 new, 1 updated, 4 unchanged" in r.stdout
    r = run_cli(clean_db, "provenance", "export", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
    r = run_cli(clean_db, "provenance", "import", str(tmp_path / "missing"))
    assert r.returncode == 2 and "not a directory" in r.stderr


async def test_export_reflects_the_store_and_filters_by_project(clean_db: str, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    write_legacy(legacy)
    for name in BAD_FILES:
        (legacy / name).unlink()
    db = Database(create_admin_engine(StorageSettings(database_url=clean_db)))
    storage = SqlStorage(db)
    try:
        report = await import_directory(storage, legacy, batch_size=2)
        assert report.records.inserted == 5 and len(report.failures) == 2  # the two bad entries
        result = await TaintCascade(SqlStorage(db)).taint(
            uuid.UUID(BASE), reason="found bad", tainted_by="carol"
        )
        # oldest, structured, odd; not proj-n's child (its art-s2 is not proj-m's)
        assert result.suspect_count == 3
        await export_directory(storage, tmp_path / "all")
        await export_directory(storage, tmp_path / "proj-n", project_id="proj-n")
    finally:
        await db.close()
    base = read(tmp_path / "all" / f"{BASE}.json")
    original = legacy_records()[BASE]
    assert base["taint"]["is_tainted"] is True and base["taint"]["tainted_by"] == "carol"
    assert base["verification_status"] == "tainted"
    # What the store did not change stays exactly as the file had it (flat-only fields too).
    for key in ("confidence", "model_used", "prompt_template", "created_at", "inputs_consumed", "outputs"):
        assert same(base[key], original[key]), key
    assert "execution" not in base and "metrics" not in base
    structured = read(tmp_path / "all" / f"{STRUCTURED}.json")
    assert structured["taint"]["is_suspect"] is True and structured["taint"]["suspect_source"] == "art-base"
    assert structured["model_used"] == "old-model" and structured["execution"]["model"] == "new-model"
    events = read(tmp_path / "all" / "taint_events.json")
    # One per artifact: base; structured (two), odd, child; oldest has none and is named by its id.
    assert [e["id"] for e in events[:2]] == ["te-1", "te-2"] and len(events) == 2 + 5
    assert {e["artifact_id"] for e in events[2:]} == {"art-base", "art-s1", "art-s2", "art-odd", OLDEST}
    assert {e["action"] for e in events[2:]} == {"taint", "suspect"}
    only_n = sorted(p.name for p in (tmp_path / "proj-n").iterdir())
    assert only_n == sorted([f"{CHILD}.json", "taint_events.json", "checkpoints.json"])
    assert [e["provenance_id"] for e in read(tmp_path / "proj-n" / "taint_events.json")] == [CHILD]
    assert read(tmp_path / "proj-n" / "checkpoints.json") == {}


@pytest.mark.parametrize("n", [300])
async def test_generated_directory_round_trips(clean_db: str, tmp_path: Path, n: int) -> None:
    generate(tmp_path / "gen", n, projects=3, seed=7)
    db = Database(create_admin_engine(StorageSettings(database_url=clean_db)))
    storage = SqlStorage(db)
    try:
        report = await import_directory(storage, tmp_path / "gen", batch_size=64)
        assert report.failures == [] and report.records.inserted == n
        assert report.dependencies_added > n // 2
        await export_directory(storage, tmp_path / "out")
        again = await import_directory(storage, tmp_path / "out")
        assert again.records.unchanged == n and again.taint_events.inserted == 0
    finally:
        await db.close()
    names = sorted(p.name for p in (tmp_path / "gen").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "out").iterdir())
    for name in names:
        assert same(read(tmp_path / "out" / name), read(tmp_path / "gen" / name)), name
    shutil.rmtree(tmp_path / "gen")


async def test_inputs_resolve_when_their_producer_arrives_later(service: Service, tmp_path: Path) -> None:
    """An imported record used an artifact nothing of its project had produced (an orphan); a
    later import, and then a task validated by QA, produce artifacts such records used: the
    edges appear, each within its project (proj-m's art-s2 is not proj-n's)."""
    docs = legacy_records()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / f"{CHILD}.json").write_bytes(orjson.dumps(docs[CHILD]))
    late = {**docs[BASE], "id": str(uuid.uuid4()), "inputs_consumed": ["art-from-a-task"], "outputs": []}
    (first / "late.json").write_bytes(orjson.dumps(late))
    (second / f"{STRUCTURED}.json").write_bytes(orjson.dumps(docs[STRUCTURED]))
    (second / f"{BASE}.json").write_bytes(orjson.dumps(docs[BASE]))
    n_producer = {
        **docs[CHILD],
        "id": str(uuid.uuid4()),
        "inputs_consumed": [],
        "created_at": "2026-01-12T00:00:00",
    }
    n_producer["outputs"] = [{"artifact_id": "art-s2", "type": "config", "location": "n.yaml"}]
    (second / "n-producer.json").write_bytes(orjson.dumps(n_producer))
    queries = service.container.provenance.queries
    await import_directory(service.container.storage, first)
    assert (await queries.consistency("proj-n"))["orphaned_artifacts"] == 1  # art-s2
    assert (await queries.lineage(CHILD))["items"] == []
    report = await import_directory(service.container.storage, second)
    assert report.dependencies_added == 2  # structured -> base, and child -> n_producer (late)
    lineage = await queries.lineage(CHILD)
    assert [(str(i["id"]), i["depth"]) for i in lineage["items"]] == [(n_producer["id"], 1)]
    assert (await queries.consistency("proj-n"))["orphaned_artifacts"] == 0
    assert (await queries.consistency("proj-m"))["orphaned_artifacts"] == 2  # art-external, art-from-a-task

    # A task's output is the artifact the imported record was waiting for.
    h = Harness(service)
    tid = await h.running_task(project_id="proj-m")
    await h.send(output_event(tid, art="art-from-a-task"))
    await wait_for_status(service, tid, "validating")
    await h.send(cloud_event("task.validated", {"task_id": tid}, source="/qa-service"), "task.validated")
    done = await wait_for_status(service, tid, "completed")
    lineage = await queries.lineage(late["id"])
    assert [str(i["id"]) for i in lineage["items"]] == [done["provenance_id"]]
    assert (await queries.consistency("proj-m"))["orphaned_artifacts"] == 1


async def test_files_parsed_on_worker_processes_import_the_same(clean_db: str, tmp_path: Path) -> None:
    generate(tmp_path / "gen", 200, projects=3, seed=7)
    db = Database(create_admin_engine(StorageSettings(database_url=clean_db)))
    try:
        report = await import_directory(SqlStorage(db), tmp_path / "gen", batch_size=32, workers=2)
        assert report.failures == [] and report.records.inserted == 200
        assert report.dependencies_added > 100
        again = await import_directory(SqlStorage(db), tmp_path / "gen", batch_size=32, workers=2)
        assert again.records.unchanged == 200 and again.dependencies_added == 0
    finally:
        await db.close()
