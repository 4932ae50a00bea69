"""Dashboards, the supervisor's cross-institution view, users, audit verification and token reveal."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from tianluo.api.errors import ApiError
from tianluo.api.models import NewUser, Reveal
from tianluo.api.routes.common import page, services, store
from tianluo.api.security import Guard

router = APIRouter()


@router.get("/dashboard/alerts-over-time", tags=["dashboard"], summary="Alerts per day or week by typology")
def alerts_over_time(request: Request, user: Annotated[Any, Depends(Guard("dashboard.read"))],
                     dataset: Annotated[str | None, Query(max_length=200)] = None,
                     bucket: Literal["day", "week"] = "day") -> dict[str, Any]:
    return store(request).dashboard_alerts_over_time(user.tenant, dataset=dataset, bucket=bucket)


@router.get("/dashboard/detectors", tags=["dashboard"], summary="Hits and false-positive rate per detector")
def detectors(request: Request, user: Annotated[Any, Depends(Guard("dashboard.read"))]) -> dict[str, Any]:
    items = store(request).dashboard_detectors(user.tenant)
    return page(items, len(items), 1, max(1, len(items)))


@router.get("/dashboard/case-ages", tags=["dashboard"], summary="Open cases by age against their SLA")
def case_ages(request: Request, user: Annotated[Any, Depends(Guard("dashboard.read"))]) -> dict[str, Any]:
    items = store(request).dashboard_case_ages(user.tenant)
    return page(items, len(items), 1, max(1, len(items)))


@router.get("/dashboard/top-parties", tags=["dashboard"], summary="The riskiest subjects")
def top_parties(request: Request, user: Annotated[Any, Depends(Guard("dashboard.read"))],
                limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
    items = store(request).dashboard_top_subjects(user.tenant, limit=limit)
    return page(items, len(items), 1, limit)


@router.get("/dashboard/regions", tags=["dashboard"], summary="Alerts, cases and amounts by region")
def regions(request: Request, user: Annotated[Any, Depends(Guard("dashboard.read"))]) -> dict[str, Any]:
    items = store(request).dashboard_regions(user.tenant)
    return page(items, len(items), 1, max(1, len(items)))


@router.get("/supervisor/overview", tags=["supervisor"], summary="Aggregates per institution (read-only)")
def overview(request: Request, _: Annotated[Any, Depends(Guard("supervisor.read"))]) -> dict[str, Any]:
    items = store(request).supervisor_overview()
    return page(items, len(items), 1, max(1, len(items)))


@router.get("/audit/verify", tags=["audit"], summary="Recompute the SM3 hash chain of the audit trail")
def verify(request: Request, _: Annotated[Any, Depends(Guard("audit.verify"))]) -> dict[str, Any]:
    res = store(request).verify_audit()
    return {"ok": res.ok, "entries": res.entries, "first_bad_seq": res.first_bad_seq}


@router.get("/users", tags=["users"], summary="Users of my institution")
def list_users(request: Request, user: Annotated[Any, Depends(Guard("users.admin"))]) -> dict[str, Any]:
    items = store(request).list_users(user.tenant)
    return page(items, len(items), 1, max(1, len(items)))


@router.post("/users", tags=["users"], status_code=201, summary="Create a user in my institution")
def create_user(body: NewUser, request: Request, user: Annotated[Any, Depends(Guard("users.admin"))]
                ) -> dict[str, Any]:
    if body.role == "supervisor":
        raise ApiError(403, "forbidden", "supervisors are created by the deployment operator (CLI), not per tenant")
    created = store(request).create_user(body.username, body.password, body.role, user.tenant,
                                         display_name=body.display_name, actor=user)
    return {"username": created.username, "role": created.role, "tenant": created.tenant,
            "display_name": created.display_name}


@router.post("/reveal", tags=["tokens"], summary="Reveal the value behind a token (with a reason; audited)")
def reveal(body: Reveal, request: Request, user: Annotated[Any, Depends(Guard("reveal"))]) -> dict[str, Any]:
    value = services(request).reveal(user, body.dataset, body.field, body.token, body.reason)
    return {"value": value}
