"""Datasets, ingest and detection jobs, and fund-flow tracing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse

from tianluo.api.errors import ApiError
from tianluo.api.models import TraceRequest
from tianluo.api.routes.common import safe_name, save_upload, services, store
from tianluo.api.security import Guard
from tianluo.api.service import detect_work, ingest_work

router = APIRouter(tags=["datasets"])
MAX_INGEST = 200 << 20
FORMATS = ("auto", "tianluo", "amlworld", "amlsim", "pacs008")


@router.get("/datasets", summary="Datasets of my institution")
def list_datasets(request: Request, user: Annotated[Any, Depends(Guard("datasets.read"))]) -> dict[str, Any]:
    svc = services(request)
    items = [svc.datasets.summary(user.tenant, d["name"]) for d in store(request).datasets(tenant=user.tenant)]
    return {"items": items, "total": len(items), "page": 1, "page_size": max(1, len(items))}


@router.get("/datasets/{name}", summary="One dataset with its write history")
def get_dataset(name: str, request: Request, user: Annotated[Any, Depends(Guard("datasets.read"))]) -> dict[str, Any]:
    return services(request).datasets.summary(user.tenant, name, writes=True)


@router.post("/datasets/{name}/ingest", status_code=202, summary="Upload a file and ingest it (background job)")
async def ingest(
    name: str,
    request: Request,
    user: Annotated[Any, Depends(Guard("datasets.write"))],
    file: Annotated[UploadFile, File(description="Source file (≤ 200 MB): CSV, Parquet, pacs.008 XML, .gz")],
    format: Annotated[str, Form(description="auto, tianluo, amlworld, amlsim, pacs008")] = "auto",
) -> dict[str, Any]:
    """Mapped CSV needs a mapping file and is ingested with the CLI; other formats are detected."""
    if format not in FORMATS:
        raise ApiError(400, "invalid", f"format {format!r}: use one of {', '.join(FORMATS)}")
    svc = services(request)
    rec = svc.datasets.record(user.tenant, name)
    dest = svc.workspace.uploads / user.tenant / uuid.uuid4().hex / safe_name(file.filename, "upload.csv")
    svc.jobs.reserve(user.tenant)
    try:
        await save_upload(file, dest, MAX_INGEST)
    except BaseException:
        svc.jobs.release(user.tenant)
        raise
    return svc.jobs.submit(user, "ingest", ingest_work(Path(rec["path"]), dest, format, svc.workspace.vault(name),
                                                   svc.keys))


@router.post("/datasets/{name}/detect", status_code=202, summary="Run detection and sync alerts (background job)")
def detect(name: str, request: Request, user: Annotated[Any, Depends(Guard("datasets.write"))]) -> dict[str, Any]:
    svc = services(request)
    ds = svc.datasets.open(user.tenant, name)
    svc.jobs.reserve(user.tenant)
    return svc.jobs.submit(user, "detect", detect_work(store(request), name, ds.root, user))


@router.get("/jobs/{job_id}", summary="A background job's status and progress")
def get_job(job_id: str, request: Request, user: Annotated[Any, Depends(Guard("jobs.read"))]) -> dict[str, Any]:
    return store(request).get_job(user.tenant, job_id)


def _alerted_accounts(request: Request, user: Any, dataset: str) -> list[str]:
    return services(request).datasets.alerted_accounts(user.tenant, dataset)


@router.post("/trace", tags=["trace"], summary="Trace money forward or backward from an account or transaction")
def run_trace(body: TraceRequest, request: Request, user: Annotated[Any, Depends(Guard("trace"))]) -> dict[str, Any]:
    req = body.model_dump()
    res = services(request).datasets.trace(user.tenant, req, _alerted_accounts(request, user, body.dataset))
    return res.to_dict()


@router.post("/trace.csv", tags=["trace"], response_class=PlainTextResponse,
             summary="The traced transactions as CSV")
def run_trace_csv(body: TraceRequest, request: Request, user: Annotated[Any, Depends(Guard("trace"))]
                  ) -> PlainTextResponse:
    res = services(request).datasets.trace(user.tenant, body.model_dump(),
                                           _alerted_accounts(request, user, body.dataset))
    return PlainTextResponse(res.edges_csv(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="trace.csv"'})
