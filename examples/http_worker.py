"""An EXAMPLE worker on the client library (docs/integrating/client.md): it follows
``task.ready.*`` on the service's event feed, "does" each task by writing a small artifact
file (heartbeats go out meanwhile), posts ``task.output.created`` and, standing in for the QA
service, ``task.validated``. It resumes from ``<out>/.last-event-id``; duplicates are safe.

    python examples/http_worker.py [--url http://127.0.0.1:8000] [--out var/artifacts]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
from pathlib import Path

from orchestration_service.client import AsyncClient
from orchestration_service.client.cloudevents import envelope
from orchestration_service.client.worker import FilePosition, HttpFeed, Job, Output, Worker


async def main(url: str, api_key: str | None, out: Path) -> None:
    def write(job: Job) -> Output:
        job.report(0.5, "writing the artifact")
        content = f"# Produced by the example worker for task {job.task_id}\n# {job.description}\n"
        path = out / f"{job.task_id}.txt"
        path.write_text(content)
        print(f"task {job.task_id} attempt {job.attempt}: {job.description[:60]}", flush=True)
        kind = "document" if job.data.get("domain") == "documentation" else "code"
        digest = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
        artifact = {"id": f"art-{job.task_id}-{job.attempt}", "type": kind, "path": str(path)}
        artifact["checksum"] = digest
        return Output([artifact], output={"content": content}, model_used="none (example)")

    async with AsyncClient(url, api_key=api_key) as client:

        async def validate(job: Job) -> None:  # what the QA service would do
            verdict = {"task_id": job.task_id, "attempt": job.attempt, "confidence": 1.0}
            await client.post_event(envelope("task.validated", "/examples/http-qa", verdict))

        feed = HttpFeed(client, FilePosition(out / ".last-event-id"))
        print(f"example worker following task.ready.* at {url} (Ctrl-C to stop)", flush=True)
        await Worker(feed, write, source="/examples/http-worker", on_output=validate).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("ORCH_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--out", default="var/artifacts", help="where artifact files are written")
    parser.add_argument("--api-key", default=os.environ.get("ORCH_API_KEY"))
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.url, args.api_key, Path(args.out)))
