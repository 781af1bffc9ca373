"""Browser tests: the dashboard in a real Chromium against a real server process.

Chromium is the system one (``/usr/bin/chromium``, or ``UI_TEST_CHROMIUM``); nothing is
downloaded. Without it the tests skip, or fail when ``ORCH_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from orchestration_service.config import load_settings
from orchestration_service.db.migrate import upgrade
from tests.conftest import missing_service
from tests.process import ServerProcess

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("UI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Where the page test writes its screenshots: set UI_SCREENSHOTS=docs/screenshots to refresh
# the committed ones; otherwise they go to the test's temporary directory.
SCREENSHOTS = os.environ.get("UI_SCREENSHOTS")


class UiServer(ServerProcess):
    """The real ``orchestration-service serve``, which serves the dashboard under /ui/."""


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a thread of its own: Playwright's sync API keeps an event loop running in
    this one, so ``asyncio.run`` (Alembic's env, async set-up code) cannot run here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def new_database(directory: Path) -> str:
    url = f"sqlite+aiosqlite:///{directory / 'orchestration.db'}"
    off_loop(upgrade, load_settings(storage={"database_url": url}).storage)
    return url


def start_server(directory: Path, *, port: int | None = None, **env: str) -> UiServer:
    url = env.pop("ORCH_DATABASE_URL", None) or new_database(directory)
    server = UiServer(
        {"ORCH_DATABASE_URL": url, "ORCH_EVENTS__RELAY_POLL_SECONDS": "0.2", **env},
        port=port,
        log_path=directory / "server.log",
    )
    return server.start()


class Api:
    """What the tests do over HTTP while the page is open."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10, headers=headers or {})

    def submit(self, description: str, project: str = "demo", **extra: Any) -> str:
        r = self.http.post("/api/v1/tasks", json={"description": description, "project_id": project, **extra})
        assert r.status_code == 201, r.text
        return str(r.json()["task_id"])

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.task(task_id)
            if doc["status"] in statuses:
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} is {doc['status']}, not {statuses}")
            time.sleep(0.05)

    def event(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        envelope = {
            "specversion": "1.0",
            "type": f"dats.{name}",
            "source": "/test",
            "id": str(uuid.uuid4()),
            "data": data,
        }
        r = self.http.post(
            "/api/v1/events", json=envelope, headers={"content-type": "application/cloudevents+json"}
        )
        assert r.status_code in (200, 202), r.text
        body: dict[str, Any] = r.json()
        return body

    def complete(self, task_id: str, artifact: str, inputs: tuple[str, ...] = ()) -> str:
        """Run a task through output and QA; returns its provenance record id."""
        self.wait_status(task_id, "running")
        out: dict[str, Any] = {
            "task_id": task_id,
            "artifacts": [{"id": artifact, "type": "code", "path": f"{artifact}.py"}],
        }
        if inputs:
            out["inputs"] = [{"artifact_id": a} for a in inputs]
        self.event("task.output.created", out)
        self.event("task.validated", {"task_id": task_id, "confidence": 0.9})
        return str(self.wait_status(task_id, "completed")["provenance_id"])

    def offers(self, method: str, path: str) -> bool:
        paths = self.http.get("/api/v1/openapi.json").json()["paths"]
        return method.lower() in paths.get(path, {})


@dataclass
class Recorder:
    """Console messages and requests of one page."""

    origin: str
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def errors(self, allow: tuple[str, ...] = ()) -> list[str]:
        found = [text for kind, text in self.console if kind == "error" and not any(a in text for a in allow)]
        return found + self.page_errors

    def foreign(self) -> list[str]:
        mine = urlsplit(self.origin).netloc
        return [
            u
            for u in self.requests
            if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != mine
        ]

    def assert_clean(self, allow: tuple[str, ...] = ()) -> None:
        assert self.errors(allow) == [], f"console errors: {self.errors(allow)}"
        assert self.foreign() == [], f"requests to other hosts: {self.foreign()}"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_service("The playwright package", exc)
    if not Path(CHROMIUM).exists():
        missing_service("Chromium", FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)"))
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        except Exception as exc:
            missing_service("Chromium", exc)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    srv = start_server(tmp_path_factory.mktemp("ui"))
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def api(server: UiServer) -> Api:
    return Api(server.url)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(base_url, viewport=DESKTOP) -> (page, recorder); contexts closed afterwards."""
    contexts: list[Any] = []

    def opener(base_url: str, viewport: dict[str, int] = DESKTOP) -> tuple[Any, Recorder]:
        context = browser.new_context(viewport=viewport, service_workers="block")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        rec = Recorder(base_url)
        rec.attach(page)
        return page, rec

    yield opener
    for c in contexts:
        with contextlib.suppress(Exception):
            c.close()
