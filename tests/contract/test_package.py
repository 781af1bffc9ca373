"""The distribution: ``python -m build`` makes an sdist and a wheel from ``[build-system]``
alone (an isolated build: nothing of the development environment helps), the wheel holds the
dashboard's assets, the default routing rules and the migrations but no tests, benchmarks or
local files, and installed into a fresh virtual environment it runs ``--version`` and
``serve`` with the shipped defaults (SQLite under the working directory, in-process bus).

Slow (about a minute): the build and the fresh environment install from the package index
(the pip cache makes later runs quicker); the dependencies are held to requirements.txt's pins.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.process import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "orchestration_service"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dist(wheel, sdist)


def shipped_files() -> list[str]:
    """What the running service reads besides Python modules, as paths in the wheel."""
    out = []
    for folder in ("ui", "defaults"):
        out += [str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / folder).rglob("*") if p.is_file()]
    out += [
        str(p.relative_to(PACKAGE.parent))
        for p in (PACKAGE / "db" / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    return [p for p in out if "__pycache__" not in p]


def test_build_system_requires_what_the_metadata_needs() -> None:
    requires = PYPROJECT["build-system"]["requires"]
    (setuptools,) = [r for r in requires if r.replace(" ", "").startswith("setuptools")]
    # An SPDX license expression (project.license a string) needs setuptools 77 or newer.
    assert isinstance(PYPROJECT["project"]["license"], str)
    minimum = setuptools.split(">=", 1)[1].split(",")[0]
    assert int(minimum.split(".")[0]) >= 77, setuptools


def test_wheel_holds_the_service_and_nothing_else(dist: Dist) -> None:
    assert dist.wheel.name == f"orchestration_service-{VERSION}-py3-none-any.whl"
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    missing = [f for f in shipped_files() if f not in names]
    assert not missing, f"not in the wheel: {missing}"
    for required in (
        "orchestration_service/ui/index.html",
        "orchestration_service/defaults/routing-rules.yaml",
        "orchestration_service/db/migrations/env.py",
        "orchestration_service/py.typed",
    ):
        assert required in names, required
    modules = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")}
    assert modules <= names, f"modules missing: {sorted(modules - names)[:5]}"
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"orchestration_service", f"orchestration_service-{VERSION}.dist-info"}, top
    for name in names:
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
    entry_points = zipfile.ZipFile(dist.wheel).read(
        f"orchestration_service-{VERSION}.dist-info/entry_points.txt"
    )
    assert b"orchestration-service = orchestration_service.cli:main" in entry_points
    metadata = (
        zipfile.ZipFile(dist.wheel).read(f"orchestration_service-{VERSION}.dist-info/METADATA").decode()
    )
    assert f"License-Expression: {PYPROJECT['project']['license']}" in metadata


def test_sdist_holds_the_sources_but_no_tests_or_local_files(dist: Dist) -> None:
    prefix = f"orchestration_service-{VERSION}/"
    with tarfile.open(dist.sdist) as tar:
        names = {n.removeprefix(prefix) for n in tar.getnames()}
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    assert {f"src/{f}" for f in shipped_files()} <= names
    for name in names:
        first = name.split("/", 1)[0]
        assert first not in {"tests", "bench", "var", ".venv", ".git", "deploy", "examples"}, name
        assert "__pycache__" not in name and not name.endswith((".pyc", ".db")), name


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment (no system packages) with only the wheel and its
    dependencies, held to requirements.txt's pins; the path of its console script."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "requirements.txt"), str(dist.wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return env_dir / "bin" / "orchestration-service"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's virtual environment or ORCH_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "VIRTUAL_ENV", "PYTHON"))}
    return {**env, **extra}


def test_version_runs_from_the_installed_wheel(installed: Path) -> None:
    done = subprocess.run(
        [str(installed), "--version"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"orchestration-service {VERSION}"


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[str]:
    """``serve`` from the installed wheel in an empty directory: no config file, so every
    setting is the shipped default (but the port, a free one on loopback)."""
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(installed), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/api/v1/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (
                "not ready within 60 s: " + (tmp_path / "serve.log").read_text()
            )
            time.sleep(0.1)
        yield url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
    assert (tmp_path / "var" / "orchestration.db").is_file(), "the SQLite default, under the working dir"


def test_serve_starts_with_the_shipped_defaults(served: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        page = client.get("/ui/")
        assert page.status_code == 200 and "<html" in page.text.lower(), "the dashboard's assets"
        for asset in ("app.css", "js/app.js"):
            assert client.get(f"/ui/{asset}").status_code == 200, asset
        # Routed by the built-in analyzer on the packaged rules: a vision task goes to the
        # large tier (defaults/routing-rules.yaml), which needs the file in the wheel.
        accepted = client.post(
            "/api/v1/tasks",
            json={"description": "segment the camera images with opencv", "project_id": "wheel"},
        )
        assert accepted.status_code == 201, accepted.text
        task_id = accepted.json()["task_id"]
        deadline = time.monotonic() + 30
        while (task := client.get(f"/api/v1/tasks/{task_id}").json())["status"] == "pending":
            assert time.monotonic() < deadline, task
            time.sleep(0.05)
        assert (task["domain"], task["tier"]) == ("code-vision", "large"), task
