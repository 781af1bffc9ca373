"""A client command's connection and output format, and the options every client command
takes after its name (``--url``, ``--api-key``, ``--json``, ``--output``/``-o``, ``--profile``).

The same options (and ``--api-key-file``) are also accepted once before the subcommand, by
the root command, which keeps them in its context object (``Flags``). ``session(ctx)`` reads the
running command's own values from its context, so a command declares them in its
signature and passes nothing along: given after the subcommand, they win over the root's;
then come the environment, the profile and the defaults (``profiles.resolve``).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from orchestration_service.cli.client import Api
from orchestration_service.cli.output import Format, People, emit, emit_event, emit_page
from orchestration_service.cli.profiles import Connection, Flags, resolve, usage

Url = Annotated[
    str | None, typer.Option("--url", help="Service base URL (env ORCH_URL).", show_default=False)
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", help="Sent as a bearer token (env ORCH_API_KEY).", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="As --output json.")]
OutputOpt = Annotated[
    Format | None,
    typer.Option("--output", "-o", help="table, json, jsonl or yaml (env ORCH_OUTPUT).", show_default=False),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile", help="A profile of the configuration file (env ORCH_PROFILE).", show_default=False
    ),
]


# The parameters ``client_command`` adds to a command: Typer makes them options, the context
# keeps their values, and ``session(ctx)`` reads them from there.
_CLIENT_OPTIONS = (
    inspect.Parameter("url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Url),
    inspect.Parameter("api_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ApiKey),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=AsJson),
    inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OutputOpt),
    inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ProfileOpt),
)


def client_command(func: Callable[..., None]) -> Callable[..., None]:
    """Give a client command ``--url``, ``--api-key``, ``--json``, ``--output`` and ``--profile``
    after its name, without each command declaring (and ignoring) five parameters: they are
    added to the signature Typer reads and dropped before the call."""
    signature = inspect.signature(func, eval_str=True)
    names = {p.name for p in _CLIENT_OPTIONS}

    def command(*args: Any, **kwargs: Any) -> None:
        func(*args, **{k: v for k, v in kwargs.items() if k not in names})

    parameters = [*signature.parameters.values(), *_CLIENT_OPTIONS]
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__annotations__["return"] = signature.return_annotation
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(command, attribute, getattr(func, attribute))
    return command


def command_flags(params: dict[str, Any]) -> Flags:
    """The connection options among a command's parameters (``--json`` is ``-o json``)."""
    output = params.get("output")
    if params.get("as_json"):
        if output not in (None, Format.json):
            raise usage(f"give --json or --output {output}, not both")
        output = Format.json
    return Flags(
        url=params.get("url"),
        api_key=params.get("api_key"),
        output=None if output is None else str(output),
        profile=params.get("profile"),
    )


def current_connection(ctx: typer.Context) -> Connection:
    """The running command's connection: its own options, the root command's, the environment,
    the profile, the defaults."""
    root = ctx.find_root().obj
    outer = root if isinstance(root, Flags) else Flags()
    # A group's callback (``fleet dead-letters``) may take the options too.
    own = Flags()
    node: Any = ctx  # typer.Context; its parents are the base class (typer._click)
    while node.parent is not None:  # from the running command up to, not including, the root
        own = own.over(command_flags(node.params))
        node = node.parent
    return resolve(own.over(outer), os.environ)


@dataclass
class Session:
    api: Api
    conn: Connection

    @property
    def fmt(self) -> Format:
        return self.conn.output

    @property
    def for_people(self) -> bool:
        return self.conn.output is Format.table

    def emit(self, doc: Any, people: People) -> None:
        emit(doc, self.fmt, people)

    def emit_page(self, page: dict[str, Any], people: People) -> None:
        emit_page(page, self.fmt, people)

    def emit_event(self, doc: Any, people: People) -> None:
        emit_event(doc, self.fmt, people)


@contextlib.contextmanager
def session(ctx: typer.Context) -> Iterator[Session]:
    """The running command's ``Session``; call it inside ``client.run`` (a bad profile or
    option is a ``CliError``, exit 2)."""
    conn = current_connection(ctx)
    client = Api(conn.url, conn.api_key)
    try:
        yield Session(client, conn)
    finally:
        client.close()
