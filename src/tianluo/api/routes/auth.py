"""Log in and out; who am I."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from tianluo.api.errors import ApiError
from tianluo.api.models import Login
from tianluo.api.routes.common import store
from tianluo.api.security import CSRF_COOKIE, SESSION_COOKIE, Guard, _session_token, csrf_for

router = APIRouter(prefix="/auth", tags=["auth"])
SESSION_TTL = dt.timedelta(hours=8)


def user_json(user: Any) -> dict[str, Any]:
    return {"username": user.username, "display_name": getattr(user, "display_name", None) or user.username,
            "role": user.role, "tenant": user.tenant}


@router.post("/login", summary="Log in with a user name and password")
def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
    """Answers a bearer token and sets the session + CSRF cookies; 429 after repeated failures."""
    st = store(request)
    address = request.client.host if request.client else "?"
    if not st.login_allowed(body.username, address):
        raise ApiError(429, "rate_limited", "too many failed log-ins for this user; wait 15 minutes")
    user = st.authenticate(body.username, body.password, address=address)
    if user is None:
        raise ApiError(401, "bad_credentials", "unknown user or wrong password")
    token, expires = st.create_session(user.username, ttl=SESSION_TTL)
    secure = request.url.scheme == "https"
    max_age = int(SESSION_TTL.total_seconds())
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure,
                        path="/")
    response.set_cookie(CSRF_COOKIE, csrf_for(token), max_age=max_age, httponly=False, samesite="strict",
                        secure=secure, path="/")
    return {"token": token, "expires_at": expires.isoformat(), "user": user_json(user)}


@router.post("/logout", status_code=204, summary="End the session")
def logout(request: Request, response: Response, _: Annotated[Any, Depends(Guard("session"))]) -> Response:
    token, _cookie = _session_token(request)
    if token:
        store(request).revoke_session(token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me", summary="The logged-in user")
def me(user: Annotated[Any, Depends(Guard("session"))]) -> dict[str, Any]:
    return user_json(user)
