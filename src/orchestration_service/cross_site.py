"""Refuse state-changing requests a browser sends on behalf of another site.

A web page open in an operator's browser can POST a form to ``127.0.0.1:8000`` (a form post
needs no CORS preflight): with auth off, that cancels tasks or clears suspects. Browsers say
where such a request comes from, so a POST, PUT, PATCH or DELETE is refused (403
``cross-site-request``) when

* ``Sec-Fetch-Site: cross-site``, or
* ``Origin`` is present and is neither the service's own origin (the host and port of the
  request's ``Host`` header, which the browser sets to the address it connects to) nor one
  of ``server.allowed_origins`` (a dashboard served from elsewhere, a proxy rewriting Host).

Clients that send neither header (curl, the CLI, other services) are unaffected, and the
dashboard, served by the service itself, is same-origin. Applied whether auth is on or off,
before the API-key check and the fast lane.

With auth off, one more rule, for any method: DNS rebinding. A page of ``evil.example``
whose name is then pointed at 127.0.0.1 is same-origin with the service as far as the browser
knows, so it could read and change everything. Its requests name ``evil.example`` in ``Host``:
a request from a browser (it sends ``Sec-Fetch-Site`` or ``Origin``) is served only when its
``Host`` is a loopback address or name, or the host of one of ``server.allowed_origins``.
With auth on, such a page has no key, and nothing more is needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration_service.domain.errors import CrossSiteRequest
from orchestration_service.http import problem

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(scheme: str, authority: str) -> tuple[str, int] | None:
    """(host, port) of an authority ``host[:port]``, the port defaulted by ``scheme``."""
    authority = authority.strip().lower()
    if not authority or "@" in authority:
        return None
    host, port_text = authority, ""
    if authority.startswith("["):  # IPv6 literal
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    if port_text:
        if not port_text.isdigit():
            return None
        return host, int(port_text)
    default = _DEFAULT_PORTS.get(scheme)
    return (host, default) if default is not None else None


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    scheme, sep, authority = origin.strip().partition("://")
    if not sep or "/" in authority:
        return None
    key = _origin_key(scheme.lower(), authority)
    return (scheme.lower(), *key) if key else None


def loopback_host(host_header: str | None) -> bool:
    """``Host`` names this machine's loopback: localhost (or a name under it), 127.0.0.0/8, ::1."""
    key = _origin_key("http", host_header or "")
    if key is None:
        return False
    host = key[0].strip("[]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, host_header: str | None) -> bool:
    """``Origin`` names the host and port the request was sent to (its ``Host``). The scheme
    is the origin's own: behind a TLS-terminating proxy the service itself sees plain HTTP."""
    parsed = _parse_origin(origin)
    if parsed is None or not host_header:
        return False
    scheme, host, port = parsed
    return _origin_key(scheme, host_header) == (host, port)


class CrossSiteGuard:
    def __init__(
        self, app: ASGIApp, *, allowed_origins: Iterable[str] = (), auth_enabled: bool = True
    ) -> None:
        self.app = app
        self.check_host = not auth_enabled  # the DNS-rebinding rule (see the module's doc)
        self.allowed: set[tuple[str, str, int]] = set()
        for origin in allowed_origins:
            parsed = _parse_origin(origin)
            if parsed is None:
                raise ValueError(f"server.allowed_origins: not an origin (scheme://host[:port]): {origin!r}")
            self.allowed.add(parsed)
        self.allowed_hosts = {(host, port) for _, host, port in self.allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (self.check_host or scope["method"] in UNSAFE_METHODS):
            reason = self._refusal(scope["headers"], unsafe=scope["method"] in UNSAFE_METHODS)
            if reason is not None:
                err = CrossSiteRequest(reason)
                response = problem(
                    err.status, kind=err.kind, title=err.title, detail=reason, instance=scope["path"]
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: list[tuple[bytes, bytes]], *, unsafe: bool) -> str | None:
        origin = host = fetch_site = None
        for name, value in headers:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1").strip().lower()
        if self.check_host and (fetch_site is not None or origin is not None) and not self._our_host(host):
            return (
                f"with auth off, a browser may reach the service only at a loopback address, not "
                f"{(host or '')[:200]!r} (DNS rebinding); add the origin to server.allowed_origins"
            )
        if not unsafe:
            return None
        if fetch_site == "cross-site":
            return "a state-changing request from another site (Sec-Fetch-Site: cross-site) is refused"
        if origin is None or same_origin(origin, host):
            return None
        parsed = _parse_origin(origin)
        if parsed is not None and parsed in self.allowed:
            return None
        return (
            f"a state-changing request from origin {origin[:200]!r} is refused: only the service's "
            "own origin and server.allowed_origins may send one"
        )

    def _our_host(self, host_header: str | None) -> bool:
        if loopback_host(host_header):
            return True
        for scheme in ("http", "https"):
            key = _origin_key(scheme, host_header or "")
            if key is not None and key in self.allowed_hosts:
                return True
        return False
