"""Cases: list, open, move through the workflow, assign, notes, evidence, subject, timeline, audit."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from tianluo.api.models import Assign, Note, TraceRequest, Transition
from tianluo.api.routes.common import PageSize, attachment, page, read_upload, safe_name, services, store
from tianluo.api.security import Guard

router = APIRouter(prefix="/cases", tags=["cases"])
MAX_EVIDENCE = 20 << 20


@router.get("", summary="Cases of my institution")
def list_cases(
    request: Request,
    user: Annotated[Any, Depends(Guard("cases.read"))],
    status: Annotated[str | None, Query(max_length=40)] = None,
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    sla: Literal["ok", "due_soon", "overdue"] | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: Literal["-risk_score", "-updated_at", "due_at"] = "-risk_score",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    if assignee == "me":
        assignee = user.username
    filters = {"status": status, "assignee": assignee, "dataset": dataset, "sla": sla, "q": q}
    items, total = store(request).list_cases(user.tenant, sort=sort, page=page_no, page_size=page_size,
                                             **{k: v for k, v in filters.items() if v is not None})
    return page(items, total, page_no, page_size)


@router.get("/{case_id}", summary="A case with its alerts, notes, evidence, reports and allowed transitions")
def get_case(case_id: str, request: Request, user: Annotated[Any, Depends(Guard("cases.read"))]) -> dict[str, Any]:
    return store(request).get_case(user, case_id)


@router.post("/{case_id}/transition", summary="Move the case to another state (if allowed for my role)")
def transition(case_id: str, body: Transition, request: Request,
               user: Annotated[Any, Depends(Guard("cases.write"))]) -> dict[str, Any]:
    store(request).transition(user, case_id, body.to, body.reason)
    return store(request).get_case(user, case_id)


@router.post("/{case_id}/assign", summary="Assign the case")
def assign(case_id: str, body: Assign, request: Request,
           user: Annotated[Any, Depends(Guard("cases.write"))]) -> dict[str, Any]:
    store(request).assign_case(user, case_id, body.assignee)
    return store(request).get_case(user, case_id)


@router.post("/{case_id}/notes", status_code=201, summary="Add a note")
def add_note(case_id: str, body: Note, request: Request,
             user: Annotated[Any, Depends(Guard("cases.write"))]) -> dict[str, Any]:
    return store(request).add_note(user, case_id, body.text)


@router.post("/{case_id}/evidence", status_code=201, summary="Attach a file (≤ 20 MB)")
async def add_evidence(case_id: str, request: Request, user: Annotated[Any, Depends(Guard("cases.write"))],
                       file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    content = await read_upload(file, MAX_EVIDENCE)
    name = safe_name(file.filename, "evidence.bin")
    return store(request).add_evidence(user, case_id, kind="file", title=name, content=content,
                                       content_type=file.content_type or "application/octet-stream")


@router.post("/{case_id}/evidence/trace", status_code=201, summary="Run a trace and attach it as evidence")
def add_trace_evidence(case_id: str, body: TraceRequest, request: Request,
                       user: Annotated[Any, Depends(Guard("cases.write"))]) -> dict[str, Any]:
    st, svc = store(request), services(request)
    case = st.get_case(user, case_id)
    if body.dataset != case["dataset"]:
        body = body.model_copy(update={"dataset": case["dataset"]})
    res = svc.datasets.trace(user.tenant, body.model_dump(), svc.datasets.alerted_accounts(user.tenant, body.dataset))
    start = body.account or body.txn_id
    title = body.title or f"{body.direction} trace from {start} ({body.method}, {body.max_hops} hops)"
    content = json.dumps(res.to_dict(), ensure_ascii=False).encode()
    return st.add_evidence(user, case_id, kind="trace", title=title, content=content,
                           content_type="application/json")


@router.get("/{case_id}/evidence/{evidence_id}", summary="Download an evidence item")
def get_evidence(case_id: str, evidence_id: str, request: Request,
                 user: Annotated[Any, Depends(Guard("cases.read"))]) -> Response:
    ev = store(request).get_evidence(user, case_id, evidence_id)
    name = safe_name(ev.get("title"), "evidence")
    return Response(ev["content"], media_type=ev.get("content_type") or "application/octet-stream",
                    headers=attachment(name))


@router.get("/{case_id}/subject", summary="The party and accounts the case is about")
def subject(case_id: str, request: Request, user: Annotated[Any, Depends(Guard("cases.read"))]) -> dict[str, Any]:
    case = store(request).get_case(user, case_id)
    return services(request).datasets.subject(user.tenant, case)


@router.get("/{case_id}/timeline", summary="The subject's transactions and alerts over time")
def timeline(case_id: str, request: Request, user: Annotated[Any, Depends(Guard("cases.read"))]) -> dict[str, Any]:
    case = store(request).get_case(user, case_id)
    return services(request).datasets.timeline(user.tenant, case)


@router.get("/{case_id}/audit", summary="The case's audit trail (hash-chained with SM3)")
def audit(case_id: str, request: Request, user: Annotated[Any, Depends(Guard("cases.read"))]) -> dict[str, Any]:
    st = store(request)
    st.get_case(user, case_id)  # 404 for another tenant's case
    items = st.audit_entries(user.tenant, case_id=case_id)
    return page(items, len(items), 1, max(1, len(items)))
