"""Errors as the API speaks them: a status, a stable code and a sentence for a person.

Every failure leaves as `{"error": code, "message": text, "details": …}` with a 4xx
status; the case store's exceptions map to 404/403/409/400 here so routers stay thin.
Unexpected exceptions become a 500 whose body names no internals (the traceback goes
to the server log only).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tianluo.api")


class ApiError(Exception):
    """An error to return as JSON with `status`."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        out["details"] = details
    return out


def _case_error_status(exc: Exception) -> tuple[int, str]:
    name = type(exc).__name__
    return {
        "NotFound": (404, "not_found"),
        "NotAllowed": (403, "forbidden"),
        "Conflict": (409, "conflict"),
        "Invalid": (400, "invalid"),
    }.get(name, (400, "invalid"))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""
    from tianluo.cases import CaseError

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(CaseError)
    async def _case(_: Request, exc: Exception) -> JSONResponse:
        status, code = _case_error_status(exc)
        return JSONResponse(body(code, str(exc)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                   for e in exc.errors()]
        first = details[0] if details else {"where": "?", "problem": "invalid"}
        return JSONResponse(body("invalid_request", f"{first['where']}: {first['problem']}", details),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(body("internal", "the server failed to handle this request; the error is logged"),
                            status_code=500)
