"""The import rule (docs/architecture.md, "Layers"): what may import what, and no import circle.

The graph is grimp's (the library under import-linter): every ``import`` statement in the
package, lazy ones inside functions and ``if TYPE_CHECKING:`` ones included. The rules are
allow-lists per layer, which import-linter's forbidden contracts cannot say ("imports only
domain", "only the ports of repositories"), so they are written here, beside the cycle check.

Every violation fails the suite, printed with its file line and the rule it breaks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import grimp

PKG = "orchestration_service"

# Modules anyone may import: settings, error text, background-task helpers, tracing and the
# request-log context. (http, sse, metrics, auth, cross_site, openapi are the HTTP edge.)
SHARED = {"config", "secret_files", "redaction", "background", "tracing", "logs"}
# The composition root: builds and wires everything; nothing imports it back.
ROOT = {"main", "container", "cli", "contracts"}
# The HTTP edge besides routers/ and middleware/: what routers may import, and the rest.
EDGE = {"http", "sse"}
EDGE_HELPERS = EDGE | {"auth", "cross_site", "metrics", "openapi"}
# What sqlalchemy/asyncpg code looks like from outside: only db/ and repositories/ use them.
DATABASE_LIBRARIES = {"sqlalchemy", "asyncpg", "aiosqlite", "alembic"}
# The client library speaks HTTP and AMQP only: it imports nothing of the server, so it could
# leave for a distribution of its own as a move (docs/integrating/client.md).
CLIENT_EXTERNALS = set(sys.stdlib_module_names) | {
    "httpx", "httpx_sse", "orjson", "pydantic", "aio_pika", "aiormq",
}  # fmt: skip
# The domain is pure: the standard library and orjson (canonical JSON), nothing else.
DOMAIN_EXTERNALS = set(sys.stdlib_module_names) | {"orjson"}


@dataclass(frozen=True, slots=True)
class Violation:
    importer: str
    imported: str
    rule: str
    where: str

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}  ({self.where})\n    breaks: {self.rule}"


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PKG, include_external_packages=True, cache_dir=None)


def short(module: str) -> str:
    return module[len(PKG) + 1 :] if module.startswith(PKG + ".") else module


def is_internal(module: str) -> bool:
    return module == PKG or module.startswith(PKG + ".")


def layer(name: str) -> str:
    """The top-level module or subpackage of a short name ('' for the package itself)."""
    return name.split(".", 1)[0] if name != PKG else ""


def is_port(name: str) -> bool:
    """A repository port: ``repositories.ports``, ``repositories.<aggregate>.port``, or an
    aggregate package (its ``__init__`` re-exports the port: checked by its own rule)."""
    if name == "repositories.ports" or (name.startswith("repositories.") and name.endswith(".port")):
        return True
    full = f"{PKG}.{name}"
    return name.count(".") == 1 and name.startswith("repositories.") and bool(graph().find_children(full))


def rule_for(importer: str, imported: str) -> str | None:
    """The rule ``importer -> imported`` breaks (short names), or None if it is allowed."""
    src, dst = layer(importer), layer(imported)
    internal = not imported.startswith("!")
    if not internal:
        ext = imported[1:]
        if src == "client" and ext not in CLIENT_EXTERNALS:
            return "the client imports only httpx(-sse), orjson, pydantic, aio-pika and the standard library"
        if src == "domain" and ext not in DOMAIN_EXTERNALS:
            return "domain imports only domain, the standard library and orjson"
        if src in {"services", "events", "routers", "middleware", "schemas"} and ext in DATABASE_LIBRARIES:
            return "only db/ and repositories/ use sqlalchemy, asyncpg or alembic"
        return None
    if src == "client" and dst != "client":
        return "the client imports nothing of the server (only orchestration_service.client)"
    if dst == "client" and src not in ROOT | {"client"}:
        return "only the composition root (the CLI) uses the client library"
    if dst == "" or (src == dst and src not in {"repositories"}):
        return None
    if dst in ROOT and src not in ROOT:
        return "nothing imports the composition root (main, container, cli, contracts)"
    if src == "domain":
        return "domain imports only domain"
    if src == "schemas":
        return None if dst == "domain" else "schemas import only domain"
    if src == "db":
        return (
            None
            if dst in {"config", "domain"} | SHARED
            else "db imports only config, domain and shared helpers"
        )
    if src == "repositories":
        if dst in {"services", "events", "routers", "middleware", "schemas"}:
            return "repositories never import services, events, schemas or routers"
        parts = importer.split(".")
        if len(parts) == 2 and imported.startswith(importer + ".") and not imported.endswith(".port"):
            # an aggregate package's __init__ is what the use cases import: it shows the port only
            return "an aggregate package's __init__ re-exports its port only"
        return None
    if src in {"services", "events"}:
        if dst == "db":
            return None if imported == "db.errors" else "use cases import nothing from db/ but db.errors"
        if dst == "repositories":
            return (
                None if is_port(imported) else "use cases import repository ports only, never implementations"
            )
        if dst == "events" and src == "services":
            return "services never import events/ (the event handlers call the services)"
        if dst in {"routers", "middleware"} | EDGE | {"metrics", "auth", "cross_site", "openapi"}:
            return "use cases never import the HTTP edge"
        return None
    if src in {"routers", "middleware"}:
        if dst in {"db", "repositories"}:
            return "routers and middleware never import db/ or repositories/"
        return None
    if src in EDGE_HELPERS and (dst == "repositories" or (dst == "db" and imported != "db.errors")):
        return "the HTTP edge never imports repositories/ or db/ (but db.errors)"
    return None


def imports() -> Iterator[tuple[str, str, str]]:
    """(importer, imported, where) for every import between two modules of the package, and
    from the package to an external top-level package (marked ``!name``)."""
    g = graph()
    for module in sorted(m for m in g.modules if is_internal(m)):
        for imported in sorted(g.find_modules_directly_imported_by(module)):
            details = g.get_import_details(importer=module, imported=imported)
            where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details[:2])
            target = short(imported) if is_internal(imported) else "!" + imported
            yield short(module), target, where


def violations() -> list[Violation]:
    found = []
    for importer, imported, where in imports():
        rule = rule_for(importer, imported)
        if rule is not None:
            found.append(Violation(importer, imported.lstrip("!"), rule, where))
    return found


def cycles(g: grimp.ImportGraph | None = None) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    g = g or graph()
    nodes = sorted(m for m in g.modules if is_internal(m))
    edges = {m: sorted(i for i in g.find_modules_directly_imported_by(m) if is_internal(i)) for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            for j in range(i, len(edges[node])):
                nxt = edges[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(short(member))
                        if member == node:
                            break
                    if len(component) > 1:
                        found.add(frozenset(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return found


def test_every_import_follows_the_layer_rule() -> None:
    found = violations()
    assert not found, "imports that break the layer rule (docs/architecture.md):\n" + "\n".join(
        map(str, found)
    )


def test_no_import_circle() -> None:
    found = cycles()
    assert not found, "import circles (lazy and TYPE_CHECKING imports count):\n" + "\n".join(
        " <-> ".join(sorted(c)) for c in sorted(found, key=sorted)
    )


def test_the_checker_sees_lazy_and_type_checking_imports() -> None:
    edges = {(importer, imported) for importer, imported, _ in imports()}
    # A lazy import inside a function (the RabbitMQ bus is loaded only when configured) and an
    # ``if TYPE_CHECKING:`` one both count.
    assert ("container", "events.rabbitmq") in edges
    assert ("services.task_manager", "services.dispatcher") in edges
    assert ("sse", "services.event_log") in edges


def test_the_rules_say_what_the_layers_may_import() -> None:
    # routers/deps.py once imported main.Container under TYPE_CHECKING: such imports count.
    assert rule_for("routers.deps", "main") is not None
    assert rule_for("services.auth", "repositories.api_keys") is None  # the package shows its port
    assert rule_for("services.auth", "repositories.api_keys.sql") is not None
    assert rule_for("services.x", "db.errors") is None
    assert rule_for("services.x", "db.engine") is not None
    assert rule_for("domain.x", "!sqlalchemy") is not None
    # The client library imports nothing of the server, and only the CLI uses it.
    assert rule_for("client.sync", "client.models") is None
    assert rule_for("client.sync", "config") is not None
    assert rule_for("client.worker", "domain.events") is not None
    assert rule_for("client.sync", "!sqlalchemy") is not None
    assert rule_for("client.sync", "!httpx") is None
    assert rule_for("cli.client", "client.sync") is None
    assert rule_for("services.remote", "client.sync") is not None


def test_a_planted_circle_is_found() -> None:
    g = grimp.build_graph(PKG, cache_dir=None)  # a graph of its own: the shared one stays true
    g.add_import(importer=f"{PKG}.domain.ids", imported=f"{PKG}.container")
    assert any({"domain.ids", "container"} <= c for c in cycles(g))
