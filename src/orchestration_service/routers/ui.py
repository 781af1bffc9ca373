"""The web dashboard: static files (HTML, CSS, ES modules) under ``orchestration_service/ui``,
served at ``/ui/``; ``GET /`` redirects there.

No build step and nothing fetched from elsewhere: the files are read once when mounted and
kept in memory with a gzip copy, answered with an ETag (so a reload is a 304) and a Content
Security Policy that lets the page talk to this origin only. The browser does all routing
(``#/tasks``, ``#/tasks/<id>`` …), so only ``index.html`` and its assets are served here.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from orchestration_service.http import problem

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
}
_COMPRESSIBLE = {".html", ".js", ".css", ".svg", ".json"}

# Only this origin: no CDN, fonts, analytics, frames or inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def load_assets(root: Path = UI_DIR) -> dict[str, Asset]:
    """Every servable file under ``root`` by its path relative to it (``js/app.js``)."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        media_type = _MEDIA_TYPES.get(path.suffix)
        if not path.is_file() or media_type is None:
            continue
        body = path.read_bytes()
        packed = gzip.compress(body, 9, mtime=0) if path.suffix in _COMPRESSIBLE else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.relative_to(root).as_posix()] = Asset(
            body, packed if packed and len(packed) < len(body) else None, media_type, etag
        )
    return assets


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _serve(asset: Asset, request: Request) -> Response:
    headers = {
        **_SECURITY_HEADERS,
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding", "")):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=asset.media_type)
    return Response(body, headers=headers, media_type=asset.media_type)


def mount_ui(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui/`` and redirect ``/`` there (kept out of the OpenAPI document)."""
    assets = load_assets()

    async def index(request: Request) -> Response:
        return _serve(assets["index.html"], request)

    async def asset(request: Request, path: str) -> Response:
        found = assets.get(path)
        if found is None:
            return problem(404, detail=f"no dashboard file {path}", instance=request.url.path)
        return _serve(found, request)

    async def to_ui() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    methods = ["GET", "HEAD"]
    app.add_api_route("/", to_ui, methods=methods, include_in_schema=False)
    app.add_api_route("/ui", to_ui, methods=methods, include_in_schema=False)
    app.add_api_route("/ui/", index, methods=methods, include_in_schema=False)
    app.add_api_route("/ui/{path:path}", asset, methods=methods, include_in_schema=False)
