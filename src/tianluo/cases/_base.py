"""The store's foundation: engines, transactions that append to the audit chain, users as values, jobs.

Every mutating method of the store runs inside `_write()`: one database transaction that
first locks the audit chain's head row (PostgreSQL `SELECT … FOR UPDATE`; on SQLite the
transaction starts with `BEGIN IMMEDIATE`, which takes the database's write lock), makes
its change, appends its audit entries and commits — so a change without its audit entry,
or two writers chaining to the same predecessor, cannot happen.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tianluo.cases.audit import AuditCheck, canonical_json, entry_hash, iso, verify_chain
from tianluo.cases.errors import Invalid, NotAllowed, NotFound
from tianluo.cases.model import AuditEntry, AuditHead, JobRow

Clock = Callable[[], dt.datetime]
JOB_STATES = ("queued", "running", "succeeded", "failed")


@dataclass(frozen=True)
class User:
    """Who is acting: what every mutating method takes as `actor` (the API builds it from the session)."""

    username: str
    role: str
    tenant: str | None
    display_name: str = ""


#: The platform itself (syncs, CLI set-up): may act in any tenant, never on case decisions.
SYSTEM = User(username="system", role="system", tenant=None, display_name="system")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_id(value: int | str, what: str) -> int:
    """A numeric id from a path segment; anything else is simply not found (never a 500)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.isdigit() and len(text) < 18:
        return int(text)
    raise NotFound(f"no {what} {value!r}")


def tenant_of(who: User | str | None) -> str:
    """The tenant a read is scoped to, from a user or a tenant id."""
    tenant = who.tenant if isinstance(who, User) else who
    if not tenant:
        raise NotAllowed("this needs a user of an institution (tenant)")
    return tenant


def page_bounds(page: int, page_size: int) -> tuple[int, int]:
    """(offset, limit) of a page; sizes above 500 are refused as the API documents."""
    if page < 1:
        raise Invalid(f"page must be 1 or more (got {page})")
    if not 1 <= page_size <= 500:
        raise Invalid(f"page_size must be between 1 and 500 (got {page_size})")
    return (page - 1) * page_size, page_size


class StoreBase:
    """Engine, clock, transactions and the audit chain; the feature mixins build on these."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        # Same pool; on SQLite the "begin" hook turns this flag into BEGIN IMMEDIATE.
        self._writer = engine.execution_options(tianluo_write=True)
        self.clock: Clock = clock or utcnow

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def now(self) -> dt.datetime:
        """The store's current time (tests inject `clock`); always aware UTC."""
        t = self.clock()
        if t.tzinfo is None:
            raise ValueError("the store's clock must return aware datetimes")
        return t.astimezone(dt.UTC)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextlib.contextmanager
    def _write(self, *, chain: bool = True) -> Iterator[Session]:
        """One write transaction; with `chain` it holds the audit head (serialising all writers)."""
        with Session(self._writer, expire_on_commit=False) as s, s.begin():
            if chain:
                head = s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
                s.info["audit_head"] = head
            yield s

    def _audit(
        self,
        s: Session,
        actor: User,
        action: str,
        object_type: str,
        object_id: object,
        details: dict[str, Any] | None = None,
        *,
        tenant: str | None,
        case_id: int | None = None,
    ) -> AuditEntry:
        """Append one entry to the chain inside the caller's `_write()` transaction."""
        head: AuditHead = s.info["audit_head"]
        seq = head.seq + 1
        text = canonical_json(details or {})
        at = self.now()
        digest = entry_hash(seq=seq, at=at, tenant=tenant, actor=actor.username, action=action,
                            object_type=object_type, object_id=str(object_id), case_id=case_id, details=text,
                            prev_hash=head.hash)
        entry = AuditEntry(seq=seq, at=at, tenant=tenant, actor=actor.username, action=action,
                           object_type=object_type, object_id=str(object_id), case_id=case_id, details=text,
                           prev_hash=head.hash, hash=digest)
        s.add(entry)
        head.seq, head.hash = seq, digest
        return entry

    # -- the audit trail -------------------------------------------------------------------

    def record_action(self, actor: User, action: str, object_type: str, object_id: object,
                      details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write an audit entry for something done outside the store (e.g. revealing a token)."""
        if not action or not object_type:
            raise Invalid("an audit entry needs an action and an object type")
        with self._write() as s:
            entry = self._audit(s, actor, action, object_type, object_id, details, tenant=actor.tenant)
            return _audit_dict(entry)

    def audit_entries(self, tenant: User | str, case_id: int | str | None = None, *, limit: int = 10_000
                      ) -> list[dict[str, Any]]:
        """The tenant's audit entries, oldest first (only those about one case when `case_id` is given)."""
        t = tenant_of(tenant)
        q = select(AuditEntry).where(AuditEntry.tenant == t)
        if case_id is not None:
            q = q.where(AuditEntry.case_id == parse_id(case_id, "case"))
        with self._read() as s:
            rows = s.execute(q.order_by(AuditEntry.seq).limit(limit)).scalars().all()
            return [_audit_dict(r) for r in rows]

    def verify_audit(self) -> AuditCheck:
        """Recompute the whole SM3 chain; report the first entry that was edited, removed or reordered."""
        with self._read() as s:
            head = s.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
            rows = s.execute(select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2000)).scalars()
            return verify_chain(rows, head.seq, head.hash)

    # -- jobs ------------------------------------------------------------------------------

    def create_job(self, actor: User, kind: str, *, message: str = "") -> dict[str, Any]:
        """Record a queued background job of the actor's tenant (the API polls it)."""
        if not kind:
            raise Invalid("a job needs a kind (ingest, detect, …)")
        with self._write() as s:
            job = JobRow(id=uuid.uuid4().hex, tenant=actor.tenant, kind=kind, status="queued", progress=0.0,
                         message=message, result=None, created_by=actor.username, created_at=self.now())
            s.add(job)
            self._audit(s, actor, "job.create", "job", job.id, {"kind": kind}, tenant=actor.tenant)
            return _job_dict(job)

    def update_job(self, job_id: str, *, status: str | None = None, progress: float | None = None,
                   message: str | None = None, result: Any = None) -> dict[str, Any]:
        """Progress of a job from its worker; finishing (succeeded/failed) is audited, progress is not."""
        if status is not None and status not in JOB_STATES:
            raise Invalid(f"job status {status!r}: use one of {', '.join(JOB_STATES)}")
        finishing = status in ("succeeded", "failed")
        with self._write(chain=finishing) as s:
            job = s.get(JobRow, job_id)
            if job is None:
                raise NotFound(f"no job {job_id!r}")
            if status is not None:
                job.status = status
            if progress is not None:
                job.progress = float(min(1.0, max(0.0, progress)))
            if message is not None:
                job.message = message
            if result is not None:
                job.result = result
            if finishing:
                job.finished_at = self.now()
                self._audit(s, SYSTEM, f"job.{status}", "job", job.id, {"kind": job.kind, "message": job.message},
                            tenant=job.tenant)
            return _job_dict(job)

    def get_job(self, tenant: User | str, job_id: str) -> dict[str, Any]:
        """A job of the tenant (another tenant's job is not found)."""
        t = tenant_of(tenant)
        with self._read() as s:
            job = s.get(JobRow, str(job_id))
            if job is None or job.tenant != t:
                raise NotFound(f"no job {job_id!r}")
            return _job_dict(job)


def _audit_dict(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at, "tenant": e.tenant, "actor": e.actor, "action": e.action,
            "object_type": e.object_type, "object_id": e.object_id, "case_id": e.case_id,
            "details": json.loads(e.details), "prev_hash": e.prev_hash, "hash": e.hash}


def _job_dict(j: JobRow) -> dict[str, Any]:
    return {"id": j.id, "kind": j.kind, "status": j.status, "progress": j.progress, "message": j.message,
            "result": j.result, "created_at": j.created_at, "finished_at": j.finished_at, "tenant": j.tenant,
            "created_by": j.created_by}


def is_system(actor: User) -> bool:
    """The platform itself (no database user can have this role)."""
    return actor.role == "system"


def require_role(actor: User, roles: Sequence[str] | frozenset[str], doing: str) -> None:
    """NotAllowed unless the actor's role is one of `roles`."""
    if actor.role not in roles:
        raise NotAllowed(f"role {actor.role!r} may not {doing} (allowed: {', '.join(sorted(roles))})")


def require_tenant_admin(actor: User, tenant: str, doing: str) -> None:
    """The platform itself, or an admin of `tenant`."""
    if is_system(actor):
        return
    if actor.role != "admin" or actor.tenant != tenant:
        raise NotAllowed(f"only an admin of {tenant} (or the operator's CLI) may {doing}")


__all__ = ["JOB_STATES", "SYSTEM", "AuditCheck", "StoreBase", "User", "iso", "utcnow"]
