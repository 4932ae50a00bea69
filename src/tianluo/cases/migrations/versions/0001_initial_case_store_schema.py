"""initial case store schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 13:31:05.636517
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Plain types on purpose: a migration must not change when the models module does.
UTC_TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", UTC_TS, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_case", "audit_log", ["tenant", "case_id"], unique=False)
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("finished_at", UTC_TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_tenant"), "jobs", ["tenant"], unique=False)
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("at", UTC_TS, nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index("ix_login_attempts_who", "login_attempts", ["username", "address", "at"], unique=False)
    op.create_table(
        "tenants",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenants")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("last_synced_at", UTC_TS, nullable=True),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_datasets_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )
    op.create_index(op.f("ix_datasets_tenant"), "datasets", ["tenant"], unique=False)
    op.create_table(
        "users",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("password_changed_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_users_tenant_tenants")),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_tenant"), "users", ["tenant"], unique=False)
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=False),
        sa.Column("party_id", sa.String(length=200), nullable=True),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("title", sa.String(length=400), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("risk_score", sa.Float(), nullable=False),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("amount_cny", sa.Float(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.Column("escalated_at", UTC_TS, nullable=True),
        sa.Column("closed_at", UTC_TS, nullable=True),
        sa.Column("due_at", UTC_TS, nullable=True),
        sa.Column("sla_kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["assignee"], ["users.username"], name=op.f("fk_cases_assignee_users")),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_cases_dataset_id_datasets")),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_cases_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index("ix_cases_subject", "cases", ["dataset_id", "subject_type", "subject_id"], unique=False)
    op.create_index("ix_cases_tenant_status", "cases", ["tenant", "status"], unique=False)
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("expires_at", UTC_TS, nullable=False),
        sa.Column("revoked_at", UTC_TS, nullable=True),
        sa.ForeignKeyConstraint(["username"], ["users.username"], name=op.f("fk_sessions_username_users")),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_username"), "sessions", ["username"], unique=False)
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=False),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_decisions_case_id_cases")),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_decisions_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index(op.f("ix_decisions_case_id"), "decisions", ["case_id"], unique=False)
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_evidence_case_id_cases")),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_evidence_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
    )
    op.create_index(op.f("ix_evidence_case_id"), "evidence", ["case_id"], unique=False)
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_notes_case_id_cases")),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_notes_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    op.create_index(op.f("ix_notes_case_id"), "notes", ["case_id"], unique=False)
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("drafter", sa.String(length=64), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=True),
        sa.Column("filed_by", sa.String(length=64), nullable=True),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("pseudonymised", sa.Boolean(), nullable=False),
        sa.Column("narrative", sa.Text(), nullable=True),
        sa.Column("alert_ids", JSON, nullable=False),
        sa.Column("report_date", sa.Date(), nullable=True),
        sa.Column("due_at", UTC_TS, nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("approved_at", UTC_TS, nullable=True),
        sa.Column("rejected_at", UTC_TS, nullable=True),
        sa.Column("rejected_by", sa.String(length=64), nullable=True),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        sa.Column("filed_at", UTC_TS, nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_reports_case_id_cases")),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_reports_dataset_id_datasets")),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_reports_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    op.create_index(op.f("ix_reports_case_id"), "reports", ["case_id"], unique=False)
    op.create_index("ix_reports_tenant_status", "reports", ["tenant", "status"], unique=False)
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(length=200), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=False),
        sa.Column("until", UTC_TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("source_alert", sa.String(length=128), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("lifted_at", UTC_TS, nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_suppressions_case_id_cases")),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_suppressions_dataset_id_datasets")),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_suppressions_tenant_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index(
        "ix_suppressions_key", "suppressions", ["dataset_id", "detector", "subject_type", "subject_id"], unique=False
    )
    op.create_table(
        "alerts",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=128), nullable=False),
        sa.Column("detector", sa.String(length=200), nullable=False),
        sa.Column("detector_version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=False),
        sa.Column("party_id", sa.String(length=200), nullable=True),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("ts_start", UTC_TS, nullable=False),
        sa.Column("ts_end", UTC_TS, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("typology", sa.String(length=100), nullable=True),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("txn_ids", JSON, nullable=False),
        sa.Column("accounts", JSON, nullable=False),
        sa.Column("amount_cny", sa.Float(), nullable=True),
        sa.Column("report_kind", sa.String(length=16), nullable=False),
        sa.Column("crcd", sa.String(length=16), nullable=True),
        sa.Column("tosc", sa.String(length=16), nullable=True),
        sa.Column("goaml_indicator", sa.String(length=16), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("due_at", UTC_TS, nullable=True),
        sa.Column("closed_at", UTC_TS, nullable=True),
        sa.Column("closed_reason", sa.Text(), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("suppressed_until", UTC_TS, nullable=True),
        sa.Column("suppression_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["assignee"], ["users.username"], name=op.f("fk_alerts_assignee_users")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_alerts_case_id_cases")),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_alerts_dataset_id_datasets")),
        sa.ForeignKeyConstraint(
            ["suppression_id"], ["suppressions.id"], name=op.f("fk_alerts_suppression_id_suppressions")
        ),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.tenant"], name=op.f("fk_alerts_tenant_tenants")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dataset_id", "alert_id", name="uq_alerts_dataset_alert"),
    )
    op.create_index(op.f("ix_alerts_case_id"), "alerts", ["case_id"], unique=False)
    op.create_index("ix_alerts_queue", "alerts", ["tenant", "status", "score"], unique=False)
    op.create_index("ix_alerts_tenant_alert", "alerts", ["tenant", "alert_id"], unique=False)
    op.create_index("ix_alerts_tenant_ts_end", "alerts", ["tenant", "ts_end"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_tenant_ts_end", "alerts")
    op.drop_index("ix_alerts_tenant_alert", "alerts")
    op.drop_index("ix_alerts_queue", "alerts")
    op.drop_index(op.f("ix_alerts_case_id"), "alerts")
    op.drop_table("alerts")
    op.drop_index("ix_suppressions_key", "suppressions")
    op.drop_table("suppressions")
    op.drop_index("ix_reports_tenant_status", "reports")
    op.drop_index(op.f("ix_reports_case_id"), "reports")
    op.drop_table("reports")
    op.drop_index(op.f("ix_notes_case_id"), "notes")
    op.drop_table("notes")
    op.drop_index(op.f("ix_evidence_case_id"), "evidence")
    op.drop_table("evidence")
    op.drop_index(op.f("ix_decisions_case_id"), "decisions")
    op.drop_table("decisions")
    op.drop_index(op.f("ix_sessions_username"), "sessions")
    op.drop_table("sessions")
    op.drop_index("ix_cases_tenant_status", "cases")
    op.drop_index("ix_cases_subject", "cases")
    op.drop_table("cases")
    op.drop_index(op.f("ix_users_tenant"), "users")
    op.drop_table("users")
    op.drop_index(op.f("ix_datasets_tenant"), "datasets")
    op.drop_table("datasets")
    op.drop_table("tenants")
    op.drop_index("ix_login_attempts_who", "login_attempts")
    op.drop_table("login_attempts")
    op.drop_index(op.f("ix_jobs_tenant"), "jobs")
    op.drop_table("jobs")
    op.drop_index("ix_audit_log_case", "audit_log")
    op.drop_table("audit_log")
    op.drop_table("audit_head")
