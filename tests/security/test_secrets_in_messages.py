"""A password in ORCH_DATABASE_URL or ORCH_BROKER_URL appears in no message and no log line
(issue 16, defect 10): configuration errors, start-up failures, connection-failure logs."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from orchestration_service.config import LoggingSettings
from orchestration_service.logs import configure_logging
from orchestration_service.redaction import redact
from tests.process import BIN, free_port

SECRET = "Pa55-w0rd-do-not-print"


def run_serve(
    env: dict[str, str], *, until: str | None = None, timeout: float = 30.0
) -> tuple[int | None, str]:
    """``serve`` with ``env``; its output once it exits or (``until``) once a line with that
    text was written (then it is stopped)."""
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
        "ORCH_CONFIG": str(Path(__file__).parent.parent / "empty-config.yaml"),
        "ORCH_PORT": str(free_port()),
        "ORCH_LOG_FORMAT": "json",
        **env,
    }
    proc = subprocess.Popen(
        [str(BIN), "serve"], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if until is not None and until in line:
                break
            assert time.monotonic() < deadline, "".join(out)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode, "".join(out)


def dead_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://app:{SECRET}@127.0.0.1/db",  # refused by validation
        f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:notaport/db",  # unparsable port
        f"postgresql://app:{SECRET}@127.0.0.1:{{dead}}/db",  # nothing listens
        f"postgresql://app:{SECRET}@@127.0.0.1:{{dead}}/db?password={SECRET}",  # odd but possible
    ],
)
def test_a_bad_database_url_is_not_printed_with_its_password(url: str) -> None:
    code, out = run_serve({"ORCH_DATABASE_URL": url.replace("{dead}", str(dead_port()))})
    assert code not in (0, None), out
    assert "orchestration-service:" in out, out
    assert SECRET not in out, out


@pytest.mark.parametrize("scheme", ["amqpx", "amqp"])
def test_a_bad_broker_url_is_not_printed_with_its_password(scheme: str, tmp_path: Path) -> None:
    env = {
        "ORCH_BROKER_URL": f"{scheme}://guest:{SECRET}@127.0.0.1:{dead_port()}/",
        "ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'o.db'}",
    }
    # amqpx: a configuration error at once; amqp: the server runs and logs its retries.
    _, out = run_serve(env, until=None if scheme == "amqpx" else "event bus unavailable")
    assert ("invalid setting" in out) if scheme == "amqpx" else ("event bus unavailable" in out), out
    assert SECRET not in out, out


def test_every_log_line_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(LoggingSettings(level="INFO", format="json"))
        log = logging.getLogger("tests.secrets")
        log.warning("cannot reach %s", f"amqp://guest:{SECRET}@127.0.0.1:5672/")
        log.warning("extra", extra={"dsn": f"postgresql://u:{SECRET}@h/db"})
        try:
            raise ConnectionError(f"failed for postgresql://u:{SECRET}@h/db")
        except ConnectionError:
            log.exception("with a traceback")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert err.count("u:***@h/db") >= 2 and "guest:***@127.0.0.1" in err, err
    assert SECRET not in err


def test_redact_masks_passwords_and_secret_parameters() -> None:
    assert redact(f"x 'postgresql://u:{SECRET}@h:5432/db' y") == "x 'postgresql://u:***@h:5432/db' y"
    assert redact(f"amqp://g:p@ss/w{SECRET}@h/") == "amqp://g:***@h/"
    assert redact(f"host=h password={SECRET} user=u") == "host=h password=*** user=u"
    assert redact("http://127.0.0.1:8000/api/v1?limit=5") == "http://127.0.0.1:8000/api/v1?limit=5"
