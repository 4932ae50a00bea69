"""The FastAPI application: one workspace, one case store, the routers of docs/api.md, the UI."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.middleware.base import BaseHTTPMiddleware

from tianluo import __version__
from tianluo.api import errors
from tianluo.api.errors import body
from tianluo.api.routes import admin, alerts, auth, cases, data, reports
from tianluo.api.security import Guard, SecurityHeaders
from tianluo.api.service import Datasets, Jobs, Keys, Reports
from tianluo.api.workspace import Workspace

PREFIX = "/api/v1"
#: Largest request body accepted at all (the ingest upload); per-route limits are smaller.
MAX_BODY = 200 << 20


class Services:
    """Everything routers need besides the store, built once per app."""

    def __init__(self, workspace: Workspace, store: Any) -> None:
        self.workspace = workspace
        self.store = store
        self.keys = Keys()
        self.datasets = Datasets(store)
        self.jobs = Jobs(store)
        self.reports = Reports(workspace, store, self.datasets, self.keys)

    def reveal(self, user: Any, dataset: str, field: str, token: str, reason: str) -> str:
        """Detokenize one value through the dataset's vault; the vault and the case store both audit it."""
        from tianluo.protect import Vault, VaultError

        self.datasets.open(user.tenant, dataset)
        path = self.workspace.vault(dataset)
        if not path.exists():
            from tianluo.api.errors import ApiError

            raise ApiError(404, "not_found", f"dataset {dataset!r} has no token vault (ingested without one)")
        ring = self.keys.ring()
        self.store.record_action(user, "reveal", "token", token, {"field": field, "dataset": dataset,
                                                                   "reason": reason})
        try:
            with Vault(path, ring) as vault:
                value = vault.reveal(field, [token], reason=reason, actor=f"{user.tenant}/{user.username}")[0]
        except VaultError as exc:
            from tianluo.api.errors import ApiError

            raise ApiError(404, "not_found", str(exc)) from exc
        return value.as_py()


class BodyLimit(BaseHTTPMiddleware):
    """Refuse oversized bodies by their declared length before reading them (413)."""

    async def dispatch(self, request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse(body("too_large", f"request body exceeds {MAX_BODY >> 20} MB"), status_code=413)
        return await call_next(request)


def create_app(workspace: Workspace | Path | str, *, store: Any = None, ui: bool = True) -> FastAPI:
    """Build the app for a workspace; `store` defaults to the workspace's case database."""
    from tianluo.cases import open_store

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    st = store if store is not None else open_store(ws.database)
    services = Services(ws, st)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        services.jobs.shutdown()

    app = FastAPI(
        title="Tianluo (天罗) API",
        version=__version__,
        description="Alerts, cases, fund-flow tracing and regulator-format reports. See docs/api.md.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.workspace, app.state.store, app.state.services = ws, st, services
    errors.install(app)
    routers = [module.router for module in (auth, data, alerts, cases, reports, admin)]
    app.state.api_routers = routers
    _document_permissions(routers)  # before inclusion: included routers may copy their routes
    for router in routers:
        app.include_router(router, prefix=PREFIX)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)

    @app.get(f"{PREFIX}/health", tags=["meta"], summary="Liveness: the app and its case store answer")
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    if ui:
        try:
            from tianluo import web
        except ImportError:  # the UI package is optional for API-only deployments
            web = None
        if web is not None and hasattr(web, "mount"):
            web.mount(app)
    return app


def _api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """(full path, route) of every API endpoint: the app's own and those of our routers.

    Why not `app.routes`: newer FastAPI keeps included routers as lazy wrappers there, so
    we walk the routers we included ourselves (their routes carry the router's prefix).
    """
    out = [(r.path, r) for r in app.routes if isinstance(r, APIRoute)]
    for router in getattr(app.state, "api_routers", []):
        out += [(PREFIX + r.path, r) for r in router.routes if isinstance(r, APIRoute)]
    return out


def permissions(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(method, path) → the permission its Guard checks, or None for an open endpoint."""
    out: dict[tuple[str, str], str | None] = {}
    for path, route in _api_routes(app):
        perm = _guard_of(route.dependant)
        for m in route.methods:
            out[(m, path)] = perm
    return out


def _guard_of(dependant: Any) -> str | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Guard):
            return dep.call.permission
        found = _guard_of(dep)
        if found:
            return found
    return None


def _document_permissions(routers: list[APIRouter]) -> None:
    """Put each route's permission and roles into the OpenAPI document (`x-permission`, `x-roles`)."""
    from tianluo.api.security import MATRIX

    for route in (r for router in routers for r in router.routes if isinstance(r, APIRoute)):
        perm = _guard_of(route.dependant)
        if perm:
            extra = dict(getattr(route, "openapi_extra", None) or {})
            extra.update({"x-permission": perm, "x-roles": sorted(MATRIX[perm])})
            route.openapi_extra = extra
