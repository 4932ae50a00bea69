"""Reports: draft from a case, four-eyes approval, filing, preview and download; large-value HVTR."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tianluo.api.models import DraftReport, LargeValue, Reject
from tianluo.api.routes.common import PageSize, attachment, page, services, store
from tianluo.api.security import Guard

router = APIRouter(tags=["reports"])


@router.post("/cases/{case_id}/reports", status_code=201, summary="Draft a suspicious-transaction report")
def draft(case_id: str, body: DraftReport, request: Request,
          user: Annotated[Any, Depends(Guard("reports.draft"))]) -> dict[str, Any]:
    """Builds CAMLMAC BSTR or goAML XML from the case's alerts, validates it, stores it as drafted."""
    return services(request).reports.draft(user, case_id, body.format, body.narrative)


@router.post("/reports/large-value", status_code=201,
             summary="Generate the CAMLMAC HVTR of one day (one XML, or ZIPs of ≤ 5 MB when large)")
def large_value(body: LargeValue, request: Request,
                user: Annotated[Any, Depends(Guard("reports.large_value"))]) -> dict[str, Any]:
    return services(request).reports.large_value(user, body.dataset, body.date)


@router.get("/reports", summary="Reports of my institution")
def list_reports(request: Request, user: Annotated[Any, Depends(Guard("reports.read"))],
                 status: Literal["drafted", "approved", "rejected", "filed"] | None = None,
                 format: Literal["camlmac_bstr", "camlmac_hvtr", "goaml"] | None = None,
                 case_id: Annotated[str | None, Query(max_length=100)] = None,
                 page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
                 page_size: PageSize = 50) -> dict[str, Any]:
    filters = {"status": status, "format": format, "case_id": case_id}
    items, total = store(request).list_reports(user.tenant, page=page_no, page_size=page_size,
                                               **{k: v for k, v in filters.items() if v is not None})
    return page(items, total, page_no, page_size)


@router.get("/reports/{report_id}", summary="One report")
def get_report(report_id: str, request: Request, user: Annotated[Any, Depends(Guard("reports.read"))]
               ) -> dict[str, Any]:
    return store(request).get_report(user.tenant, report_id)


@router.post("/reports/{report_id}/approve", summary="Approve (senior; never the drafter)")
def approve(report_id: str, request: Request, user: Annotated[Any, Depends(Guard("reports.approve"))]
            ) -> dict[str, Any]:
    return services(request).reports.approve(user, report_id)


@router.post("/reports/{report_id}/reject", summary="Reject with a reason; the case returns to escalated")
def reject(report_id: str, body: Reject, request: Request,
           user: Annotated[Any, Depends(Guard("reports.approve"))]) -> dict[str, Any]:
    return store(request).reject_report(user, report_id, body.reason)


@router.post("/reports/{report_id}/file", summary="Mark an approved report as filed with the regulator")
def file_report(report_id: str, request: Request, user: Annotated[Any, Depends(Guard("reports.approve"))]
                ) -> dict[str, Any]:
    return store(request).file_report(user, report_id)


@router.get("/reports/{report_id}/preview", summary="The report's XML as text")
def preview(report_id: str, request: Request, user: Annotated[Any, Depends(Guard("reports.read"))]
            ) -> dict[str, Any]:
    content = store(request).report_content(user.tenant, report_id)
    return {"xml": content.decode("utf-8")}


@router.get("/reports/{report_id}/download", summary="Download the report file")
def download(report_id: str, request: Request, user: Annotated[Any, Depends(Guard("reports.read"))]) -> Response:
    st = store(request)
    rep = st.get_report(user.tenant, report_id)
    content = st.report_content(user.tenant, report_id)
    name = rep["file_name"]
    media = "application/zip" if name.upper().endswith(".ZIP") else "application/xml"
    return Response(content, media_type=media, headers=attachment(name))
