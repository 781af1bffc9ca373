"""An EXAMPLE, not a worker: it shows how a service takes part in DATS over HTTP alone.

It follows ``task.ready.*`` on the orchestration service's event feed (Server-Sent Events),
"does" each task by reporting progress (``task.progress``) and writing a small artifact
file, then posts ``task.output.created`` and,
standing in for the QA service, ``task.validated`` to the CloudEvents ingress. Real workers
run models; this one writes a text file.

    python examples/http_worker.py [--url http://127.0.0.1:8000] [--out var/artifacts]

It resumes from the last event it handled (kept in ``<out>/.last-event-id``), so stopping and
starting it loses nothing; the service ignores duplicate event ids, so re-delivery is safe.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse

SOURCE_WORKER = "/examples/http-worker"
SOURCE_QA = "/examples/http-qa"


def cloud_event(event: str, source: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": f"dats.{event}",
        "source": source,
        # A deterministic id: if this example crashes and handles the same task again,
        # the service recognises the event as a duplicate.
        "id": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{event}/{data['task_id']}/{data.get('attempt', 1)}")
        ),
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "subject": data["task_id"],
        "data": data,
    }


def post(client: httpx.Client, envelope: dict[str, Any]) -> None:
    r = client.post(
        "/api/v1/events",
        content=orjson.dumps(envelope),
        headers={"content-type": "application/cloudevents+json"},
    )
    if r.status_code >= 400:
        print(f"  ! {envelope['type']} refused: {r.status_code} {r.text[:200]}", file=sys.stderr)
    else:
        print(f"  -> {envelope['type']} ({r.json()['outcome']})")


def handle(client: httpx.Client, ready: dict[str, Any], out_dir: Path) -> None:
    data = ready["data"]
    task_id, attempt = data["task_id"], data["attempt"]
    current = client.get(f"/api/v1/tasks/{task_id}").json()
    if current.get("status") != "running" or current.get("attempt") != attempt:
        return  # an old announcement (replayed feed): that attempt is over
    print(f"task {task_id} ({data['tier']}, {data['domain']}, attempt {attempt}): {data['description'][:60]}")
    started = time.monotonic()
    # A heartbeat: the task's page, its stream and `task submit --wait` show it.
    progress = {"task_id": task_id, "attempt": attempt, "progress": 0.5, "message": "writing the artifact"}
    post(client, cloud_event("task.progress", SOURCE_WORKER, progress))
    content = f"# Produced by the example worker for task {task_id}\n# {data['description']}\n"
    path = out_dir / f"{task_id}.txt"
    path.write_text(content)
    artifact = {
        "id": f"art-{task_id}-{attempt}",
        "type": "document" if data["domain"] == "documentation" else "code",
        "path": str(path),
        "checksum": "sha256:" + hashlib.sha256(content.encode()).hexdigest(),
        "size_bytes": len(content.encode()),
    }
    output = {
        "task_id": task_id,
        "attempt": attempt,
        "worker_id": f"example-{os.getpid()}",
        "model_used": "none (example)",
        "tokens_input": 0,
        "tokens_output": 0,
        "execution_time_ms": int((time.monotonic() - started) * 1000),
        "artifacts": [artifact],
        "output": {"content": content},
    }
    post(client, cloud_event("task.output.created", SOURCE_WORKER, output))
    verdict = {
        "task_id": task_id,
        "attempt": attempt,
        "confidence": 1.0,
        "qa_profile": data.get("qa_profile"),
    }
    post(client, cloud_event("task.validated", SOURCE_QA, verdict))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("ORCH_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--out", default="var/artifacts", help="where artifact files are written")
    parser.add_argument("--api-key", default=os.environ.get("ORCH_API_KEY"))
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bookmark = out_dir / ".last-event-id"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    print(f"example worker following task.ready.* at {args.url} (Ctrl-C to stop)")
    with httpx.Client(base_url=args.url, headers=headers, timeout=httpx.Timeout(30, read=None)) as client:
        while True:
            last = bookmark.read_text().strip() if bookmark.exists() else None
            # Without a bookmark, start with what is already waiting (after=0) only once.
            params: dict[str, Any] = {"type": "task.ready.*", **({} if last else {"after": 0})}
            try:
                with connect_sse(
                    client,
                    "GET",
                    "/api/v1/events",
                    params=params,
                    headers={"Last-Event-ID": last} if last else {},
                ) as source:
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue  # a heartbeat comment
                        handle(client, orjson.loads(sse.data), out_dir)
                        bookmark.write_text(sse.id)
            except httpx.TransportError as exc:
                print(f"connection lost ({type(exc).__name__}); retrying in 1s", file=sys.stderr)
                time.sleep(1)
            except KeyboardInterrupt:
                return 0


if __name__ == "__main__":
    sys.exit(main())
