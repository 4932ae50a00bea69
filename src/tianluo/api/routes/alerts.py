"""The alert queue: filter, sort, page; bulk assign; bulk close as false positive."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from tianluo.api.models import BulkAssign, BulkClose
from tianluo.api.routes.common import Page, PageSize, page, services, store
from tianluo.api.security import Guard

router = APIRouter(prefix="/alerts", tags=["alerts"])
Sort = Literal["-score", "score", "-ts_end", "ts_end", "-amount_cny", "amount_cny"]
_STATE = "(open|in_case|closed_fp|suppressed)"
Status = Annotated[str | None, Query(pattern=f"^{_STATE}(,{_STATE}){{0,3}}$", max_length=60,
                                     description="one state, or several separated by commas (open,in_case)")]


@router.get("", summary="The alert queue (ranked by score by default)")
def list_alerts(
    request: Request,
    user: Annotated[Any, Depends(Guard("alerts.read"))],
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    status: Status = None,
    typology: Annotated[str | None, Query(max_length=100)] = None,
    detector: Annotated[str | None, Query(max_length=200)] = None,
    kind: Literal["rule", "miner", "model"] | None = None,
    report_kind: Literal["large_value", "suspicious"] | None = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    min_amount: Annotated[float | None, Query(ge=0)] = None,
    max_amount: Annotated[float | None, Query(ge=0)] = None,
    assignee: Annotated[str | None, Query(max_length=100, description='user name, "me" or "none"')] = None,
    q: Annotated[str | None, Query(max_length=200, description="subject id contains")] = None,
    sort: Sort = "-score",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    if assignee == "me":
        assignee = user.username
    filters = {"dataset": dataset, "status": status.split(",") if status else None, "typology": typology,
               "detector": detector, "kind": kind,
               "report_kind": report_kind, "min_score": min_score, "max_score": max_score, "date_from": date_from,
               "date_to": date_to, "min_amount": min_amount, "max_amount": max_amount, "assignee": assignee, "q": q}
    items, total = store(request).list_alerts(user.tenant, sort=sort, page=page_no, page_size=page_size,
                                              **{k: v for k, v in filters.items() if v is not None})
    return page(items, total, page_no, page_size)


@router.get("/{alert_id}", summary="One alert")
def get_alert(alert_id: str, request: Request, user: Annotated[Any, Depends(Guard("alerts.read"))]) -> dict[str, Any]:
    return store(request).get_alert(user.tenant, alert_id)


@router.get("/{alert_id}/pattern", summary="The alert's pattern instance as a small graph")
def pattern(alert_id: str, request: Request, user: Annotated[Any, Depends(Guard("alerts.read"))]) -> dict[str, Any]:
    alert = store(request).get_alert(user.tenant, alert_id)
    return services(request).datasets.pattern(user.tenant, alert)


@router.post("/bulk-assign", summary="Assign alerts (and their cases) to a user, or unassign")
def bulk_assign(body: BulkAssign, request: Request, user: Annotated[Any, Depends(Guard("alerts.write"))]
                ) -> dict[str, Any]:
    return {"updated": store(request).assign_alerts(user, body.alert_ids, body.assignee)}


@router.post("/bulk-close", summary="Close alerts as false positives, suppressing the same facts for a while")
def bulk_close(body: BulkClose, request: Request, user: Annotated[Any, Depends(Guard("alerts.write"))]
               ) -> dict[str, Any]:
    closed = store(request).close_alerts_false_positive(user, body.alert_ids, body.reason,
                                                        suppress_days=body.suppress_days)
    return {"closed": closed}


_ = Page  # the queue names its page parameter explicitly (alias "page")
