"""`open_store(url)`: connect to the case database, migrate it to the current schema, return a `CaseStore`.

SQLite (a file; the embedded default) and PostgreSQL (`postgresql+psycopg://…`) run the
same code. On SQLite the connection is set up for a small team on one machine: foreign
keys on, WAL (readers never block the writer), a 30 s busy timeout, and write
transactions that start with `BEGIN IMMEDIATE` so two writers queue instead of failing
half-way. Migrations are Alembic revisions shipped in the package and applied from code
(no alembic.ini); concurrent `open_store` calls on PostgreSQL serialise on an advisory lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from argon2 import PasswordHasher
from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from tianluo.cases._base import Clock
from tianluo.cases.accounts import AccountsMixin
from tianluo.cases.audit import GENESIS
from tianluo.cases.errors import CaseError, Invalid
from tianluo.cases.insight import InsightMixin
from tianluo.cases.model import AuditHead

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "tianluo_cases_version"
#: pg_advisory_xact_lock key for migrations ("TIANLUO" in ASCII, fits a bigint).
_MIGRATION_LOCK = 0x5449414E4C554F


class CaseStore(AccountsMixin, InsightMixin):
    """The case store: tenants and users, the alert queue, cases, reports, audit trail, jobs, dashboards.

    Every mutating method takes the acting `User` and writes its audit entry in the same
    transaction; every read is scoped to a tenant (another tenant's ids are not found).
    Results are plain dicts with the field names of docs/api.md.
    """

    def __init__(self, engine: Engine, *, clock: Clock | None = None,
                 password_hasher: PasswordHasher | None = None) -> None:
        super().__init__(engine, clock=clock)
        self.hasher = password_hasher or PasswordHasher()
        self._dummy_hash = None

    def __repr__(self) -> str:
        return f"CaseStore({self.url!r})"


def database_url(url: str) -> str:
    """Accept a SQLAlchemy URL or a bare file path (taken as a SQLite database)."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def make_engine(url: str) -> Engine:
    """An engine for the case database with the per-dialect settings described above."""
    try:
        parsed = make_url(database_url(url))
    except ArgumentError as exc:
        raise Invalid(f"case database URL {url!r} is not valid: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            raise Invalid("the case store needs a SQLite file (sqlite:///path/cases.db), not an in-memory database")
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_hooks(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise Invalid(f"case database {parsed.get_backend_name()!r} is not supported: use sqlite:/// or postgresql+psycopg://")


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        for pragma in ("foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("tianluo_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic configured from code: the packaged migrations, our version table, an open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine) -> None:
    """Migrate the database to the newest revision and make sure the audit chain's head row exists."""
    writer = engine.execution_options(tianluo_write=True)
    with writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        command.upgrade(alembic_config(conn), "head")
        if conn.execute(select(AuditHead.id).where(AuditHead.id == 1)).first() is None:
            conn.execute(AuditHead.__table__.insert().values(id=1, seq=0, hash=GENESIS))


def open_store(url: str, *, clock: Clock | None = None, password_hasher: PasswordHasher | None = None) -> CaseStore:
    """Open (creating and migrating as needed) the case database at `url` and return its store.

    `url`: `sqlite:///path/cases.db` (or just a path), or
    `postgresql+psycopg://user:password@host:port/db`. `clock` returns the current aware
    UTC time (tests inject one); `password_hasher` sets argon2 parameters.
    """
    engine = make_engine(url)
    try:
        upgrade(engine)
    except OperationalError as exc:
        engine.dispose()
        safe = engine.url.render_as_string(hide_password=True)
        raise CaseError(f"cannot open the case database {safe}: {exc.orig}") from exc
    return CaseStore(engine, clock=clock, password_hasher=password_hasher)
