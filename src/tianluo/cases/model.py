"""The case database's tables as SQLAlchemy 2 models; the Alembic migrations create exactly these.

The same models run on SQLite (the embedded default) and PostgreSQL (a team's server),
so column types are the portable ones: timestamps go through `UTCDateTime` (SQLite
keeps no time zone, PostgreSQL does; both give back aware UTC datetimes), JSON is JSON
(JSONB on PostgreSQL) and file contents are `LargeBinary`. Every row that belongs to an
institution carries `tenant`, so scoping a query is one equality, never a join.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every backend (SQLite stores it naive, PostgreSQL as timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the case store only stores aware (UTC) times")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


Json = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    """An institution: its users see only its datasets, alerts, cases and reports."""

    __tablename__ = "tenants"
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class UserRow(Base):
    """A log-in: argon2id password hash, one role, one tenant; disabled users cannot log in."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SessionRow(Base):
    """A log-in session; only the SHA-256 of its token is stored, so a leaked table opens nothing."""

    __tablename__ = "sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class LoginAttempt(Base):
    """Every log-in attempt (unknown user names too): the rate limit counts the failures."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_who", "username", "address", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    success: Mapped[bool] = mapped_column(Boolean)


class DatasetRow(Base):
    """A dataset folder registered under a tenant; names are unique across the deployment."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"), index=True)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_synced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class CaseRow(Base):
    """A case: one subject (party, else account) of one dataset, its alerts and where it stands."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_subject", "dataset_id", "subject_type", "subject_id"),
        Index("ix_cases_tenant_status", "tenant", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(32))
    assignee: Mapped[str | None] = mapped_column(ForeignKey("users.username"))
    risk_score: Mapped[float] = mapped_column(Float, default=0.0)
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    amount_cny: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    sla_kind: Mapped[str] = mapped_column(String(16))


class SuppressionRow(Base):
    """'Do not alert these facts again until …': same dataset, detector and subject; who, why, until."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("ix_suppressions_key", "dataset_id", "detector", "subject_type", "subject_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    detector: Mapped[str] = mapped_column(String(200))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(200))
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    source_alert: Mapped[str | None] = mapped_column(String(128))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(64))


class AlertRow(Base):
    """A detector's alert copied from the dataset, plus where it is in the queue."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("dataset_id", "alert_id", name="uq_alerts_dataset_alert"),
        Index("ix_alerts_queue", "tenant", "status", "score"),
        Index("ix_alerts_tenant_alert", "tenant", "alert_id"),
        Index("ix_alerts_tenant_ts_end", "tenant", "ts_end"),
    )
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    alert_id: Mapped[str] = mapped_column(String(128))
    detector: Mapped[str] = mapped_column(String(200))
    detector_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(16))
    ts_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ts_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    score: Mapped[float] = mapped_column(Float)
    typology: Mapped[str | None] = mapped_column(String(100))
    reasons: Mapped[list[str]] = mapped_column(Json)
    txn_ids: Mapped[list[str]] = mapped_column(Json)
    accounts: Mapped[list[str]] = mapped_column(Json)
    amount_cny: Mapped[float | None] = mapped_column(Float)
    report_kind: Mapped[str] = mapped_column(String(16))
    crcd: Mapped[str | None] = mapped_column(String(16))
    tosc: Mapped[str | None] = mapped_column(String(16))
    goaml_indicator: Mapped[str | None] = mapped_column(String(16))
    run_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(ForeignKey("users.username"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_reason: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    suppressed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    suppression_id: Mapped[int | None] = mapped_column(ForeignKey("suppressions.id"))


class NoteRow(Base):
    """An investigator's note on a case."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class EvidenceRow(Base):
    """A file or a fund-flow trace attached to a case, with its SHA-256 for integrity."""

    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DecisionRow(Base):
    """A state change of a case: from, to, who, why, when."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ReportRow(Base):
    """A regulator-format report: a case's STR, or a day's large-value report (no case)."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_tenant_status", "tenant", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.tenant"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    format: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    drafter: Mapped[str] = mapped_column(String(64))
    approver: Mapped[str | None] = mapped_column(String(64))
    filed_by: Mapped[str | None] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(300))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    valid: Mapped[bool] = mapped_column(Boolean)
    errors: Mapped[list[Any]] = mapped_column(Json)
    #: drafted on tokens (no reveal); the approved file carries the revealed values
    pseudonymised: Mapped[bool] = mapped_column(Boolean, default=False)
    narrative: Mapped[str | None] = mapped_column(Text)
    alert_ids: Mapped[list[str]] = mapped_column(Json)
    report_date: Mapped[dt.date | None] = mapped_column(Date)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    rejected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    rejected_by: Mapped[str | None] = mapped_column(String(64))
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    filed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """One entry of the SM3 hash chain: `hash` = SM3(canonical entry incl. `prev_hash`)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_case", "tenant", "case_id"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    tenant: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    case_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's newest entry (one row): appends lock it, and verification compares against it.

    Locking this row serialises every writer on PostgreSQL (`SELECT … FOR UPDATE`), so two
    concurrent appends can never both chain to the same predecessor; and because it records
    the newest hash, deleting entries from the end of the log is detected too.
    """

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class JobRow(Base):
    """A long-running job (ingest, detection) and its progress, for the API to poll."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[Any | None] = mapped_column(Json)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
