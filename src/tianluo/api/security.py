"""Who may call what: roles, the authorisation matrix, sessions, CSRF and security headers.

Every endpoint declares the one permission it needs with `Depends(Guard("…"))`; the
matrix below is the only place that says which roles hold it, `docs/api.md` prints it,
and a test calls every endpoint as every role. Tenant scoping is not a permission: the
case store takes the caller's tenant on every read and write, so an id from another
institution is simply not found.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response

from tianluo.api.errors import ApiError

ROLES = ("analyst", "senior", "admin", "auditor", "supervisor")

#: permission → roles holding it. Read this as the product's access policy.
MATRIX: dict[str, frozenset[str]] = {
    "session": frozenset(ROLES),
    "datasets.read": frozenset({"analyst", "senior", "admin", "auditor"}),
    "datasets.write": frozenset({"admin"}),
    "jobs.read": frozenset({"admin", "auditor"}),
    "alerts.read": frozenset({"analyst", "senior", "auditor"}),
    "alerts.write": frozenset({"analyst", "senior"}),
    "cases.read": frozenset({"analyst", "senior", "auditor"}),
    "cases.write": frozenset({"analyst", "senior"}),
    "trace": frozenset({"analyst", "senior", "auditor"}),
    "reports.read": frozenset({"analyst", "senior", "auditor"}),
    "reports.draft": frozenset({"analyst", "senior"}),
    "reports.approve": frozenset({"senior"}),
    "reports.large_value": frozenset({"senior"}),
    "dashboard.read": frozenset({"analyst", "senior", "auditor", "admin"}),
    "audit.verify": frozenset({"auditor", "admin"}),
    "users.admin": frozenset({"admin"}),
    "supervisor.read": frozenset({"supervisor"}),
    "reveal": frozenset({"senior", "auditor"}),
}

SESSION_COOKIE = "tianluo_session"
CSRF_COOKIE = "tianluo_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def csrf_for(token: str) -> str:
    """The CSRF value bound to a session token (double submit without server state)."""
    return hashlib.sha256(b"tianluo-csrf\0" + token.encode()).hexdigest()[:40]


def _session_token(request: Request) -> tuple[str | None, bool]:
    """The caller's session token and whether it came from the cookie (then CSRF applies)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None, False
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie, cookie is not None


def current_user(request: Request):
    """The logged-in user, or 401; cookie sessions must also pass the CSRF check on writes."""
    token, from_cookie = _session_token(request)
    if not token:
        raise ApiError(401, "not_authenticated", "log in first (POST /api/v1/auth/login)")
    user = request.app.state.store.resolve_session(token)
    if user is None:
        raise ApiError(401, "session_expired", "the session is unknown or has expired; log in again")
    if from_cookie and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_for(token)):
            raise ApiError(403, "csrf", "missing or wrong X-CSRF-Token header (copy the tianluo_csrf cookie)")
    request.state.user = user
    return user


class Guard:
    """Dependency: the current user, if their role holds `permission`; 403 otherwise."""

    def __init__(self, permission: str) -> None:
        if permission not in MATRIX:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission

    def __call__(self, user: Annotated[object, Depends(current_user)]):
        role = getattr(user, "role", None)
        if role not in MATRIX[self.permission]:
            allowed = ", ".join(sorted(MATRIX[self.permission]))
            raise ApiError(403, "forbidden", f"role {role!r} may not do this ({self.permission}; allowed: {allowed})")
        return user


class SecurityHeaders(BaseHTTPMiddleware):
    """Headers every response carries: no framing, no sniffing, a strict same-origin CSP."""

    CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
           "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

    async def dispatch(self, request: Request, call_next):
        response: Response = await call_next(request)
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        h.setdefault("Content-Security-Policy", self.CSP)
        if request.url.path.startswith("/api/"):
            h.setdefault("Cache-Control", "no-store")
        return response


def matrix_markdown() -> str:
    """The authorisation matrix as a Markdown table (docs/api.md embeds it; a test checks it is current)."""
    head = "| permission | " + " | ".join(ROLES) + " |\n|---|" + "---|" * len(ROLES) + "\n"
    rows = "".join(
        f"| `{perm}` | " + " | ".join("✓" if r in roles else "" for r in ROLES) + " |\n"
        for perm, roles in MATRIX.items()
    )
    return head + rows
