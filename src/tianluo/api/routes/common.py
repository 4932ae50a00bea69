"""Shared router helpers: the app's services, pagination and bounded uploads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Query, Request, UploadFile

from tianluo.api.errors import ApiError

Page = Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1.")]
PageSize = Annotated[int, Query(ge=1, le=500, description="Items per page (max 500).")]
CHUNK = 1 << 20


def store(request: Request) -> Any:
    return request.app.state.store


def services(request: Request) -> Any:
    return request.app.state.services


def page(items: list[Any], total: int, page_no: int, size: int) -> dict[str, Any]:
    return {"items": items, "total": total, "page": page_no, "page_size": size}


async def save_upload(upload: UploadFile, dest: Path, limit: int) -> tuple[int, str]:
    """Stream an upload to `dest`, refusing (413) beyond `limit` bytes; returns size and SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    size, digest = 0, hashlib.sha256()
    try:
        with open(dest, "wb") as fh:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"upload exceeds {limit // (1 << 20)} MB")
                digest.update(chunk)
                fh.write(chunk)
    except ApiError:
        dest.unlink(missing_ok=True)
        raise
    if size == 0:
        dest.unlink(missing_ok=True)
        raise ApiError(400, "invalid", "the uploaded file is empty")
    return size, digest.hexdigest()


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """An upload in memory, refusing (413) beyond `limit` bytes."""
    parts, size = [], 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"upload exceeds {limit // (1 << 20)} MB")
        parts.append(chunk)
    if size == 0:
        raise ApiError(400, "invalid", "the uploaded file is empty")
    return b"".join(parts)


def safe_name(name: str | None, default: str) -> str:
    """A file name without directories or control characters (uploads never choose paths)."""
    base = Path(name or default).name
    clean = "".join(c for c in base if c.isalnum() or c in "._-")[:120].lstrip(".")
    return clean or default


def attachment(name: str) -> dict[str, str]:
    """Content-Disposition for a download whose name may hold Chinese (RFC 6266 / 5987).

    Headers are Latin-1, so the plain `filename` gets an ASCII fallback and `filename*`
    carries the real name percent-encoded in UTF-8; browsers prefer the latter.
    """
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name) or "download"
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"}
