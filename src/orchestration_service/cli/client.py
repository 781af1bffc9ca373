"""The HTTP side of the CLI: a small client that turns every expected failure into one
clear line and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

import httpx
import typer
from httpx_sse import EventSource, connect_sse

DEFAULT_URL = "http://127.0.0.1:8000"

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_ERROR = 1  # API error, unreachable service, task failed
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    raise CliError(message, code)


class Api:
    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.base = url.rstrip("/")
        headers = {"User-Agent": "orchestration-service-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=self.base + "/api/v1", headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TimeoutException:
            fail(f"the service at {self.base} did not answer in time")
        except httpx.TransportError as exc:
            fail(f"cannot reach the service at {self.base} ({type(exc).__name__})")
        if r.status_code >= 400:
            fail(problem_line(r))
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            fail(f"the service at {self.base} answered {r.status_code} with something that is not JSON")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers)

    @contextlib.contextmanager
    def sse(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = None,
        **params: Any,
    ) -> Iterator[EventSource]:
        try:
            with connect_sse(
                self.http,
                "GET",
                path,
                params={k: v for k, v in params.items() if v is not None},
                headers=dict(headers or {}),
                timeout=httpx.Timeout(30.0, read=read_timeout),
            ) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    fail(problem_line(source.response))
                yield source
        except httpx.TransportError as exc:
            fail(f"lost the connection to the service at {self.base} ({type(exc).__name__})")


def problem_line(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"error {r.status_code}: {r.text[:200].strip() or r.reason_phrase}"
    if isinstance(body, dict) and "title" in body:
        detail = body.get("detail")
        return f"{body['title']}: {detail}" if detail and detail != body["title"] else str(body["title"])
    return f"error {r.status_code}: {str(body)[:200]}"


@contextlib.contextmanager
def api(url: str, api_key: str | None) -> Iterator[Api]:
    client = Api(url, api_key)
    try:
        yield client
    finally:
        client.close()


def run(fn: Any) -> Any:
    """Run a command body, turning CliError into a message and an exit code."""
    try:
        return fn()
    except CliError as exc:
        typer.echo(f"orchestration-service: {exc.message}", err=True)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
