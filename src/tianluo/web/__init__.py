"""The investigator web UI: the built single-page app in `dist/` and how the API app serves it.

`scripts/build-web.sh` (the Makefile's `web` target) bundles `web/` into `DIST`. `mount(app)`
serves it at `/`: files under `dist/` as they are (hashed assets cached for a year), every
other non-API GET answered with `index.html` so that the app's own routes (`/alerts`,
`/cases/<id>`, …) survive a reload. Paths under `/api` are never touched, whatever order the
routes were added in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

__all__ = ["DIST", "mount"]

DIST: Path = Path(__file__).resolve().parent / "dist"

# The UI talks only to its own origin; API strings are never inserted as HTML.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Tianluo</title>
<h1>The web UI is not built</h1>
<p>Run <code>scripts/build-web.sh</code> (or <code>make web</code>) and reload this page.
The API is available under /api/v1 (its OpenAPI document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>).</p>
"""


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class _SpaRoute(Route):
    """A catch-all GET route that steps aside for `/api/...`, so API routes added later still match."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and _is_api(scope.get("path", "")):
            return Match.NONE, {}
        return super().matches(scope)


def _file(path: Path, *, immutable: bool) -> FileResponse:
    headers = dict(_SECURITY_HEADERS)
    headers["Cache-Control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
    return FileResponse(path, headers=headers)


async def _serve(request: Request) -> Response:
    dist = DIST
    index = dist / "index.html"
    if not index.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503)
    rel = request.path_params.get("path", "") or ""
    if rel:
        candidate = (dist / rel).resolve()
        if candidate.is_relative_to(dist) and candidate.is_file():
            return _file(candidate, immutable=candidate.parent.name == "assets")
        if rel.startswith("assets/"):
            # a missing bundle file is an error, not a page of the app
            return PlainTextResponse("not found", status_code=404)
    return _file(index, immutable=False)


def mount(app: Any) -> None:
    """Serve the UI at `/` on a FastAPI/Starlette `app`, with the SPA fallback for non-API paths."""
    routes = app.router.routes
    if any(isinstance(r, _SpaRoute) for r in routes):
        return
    routes.append(_SpaRoute("/{path:path}", _serve, methods=["GET", "HEAD"], include_in_schema=False))
