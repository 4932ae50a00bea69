"""Users and sessions, the log-in rate limit, tenant isolation, jobs, and the migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import create_engine, inspect, text

from tests.cases_support import (  # noqa: F401 - fixtures are used by name
    FAST_HASHER,
    PASSWORD,
    Bank,
    Clock,
    World,
    bank_fixture,
    db_url_fixture,
    world_fixture,
)
from tests.pg import pg_database_fixture, pg_server_fixture  # noqa: F401
from tianluo.cases import SYSTEM, CaseError, Conflict, Invalid, NotAllowed, NotFound, User, open_store
from tianluo.cases.model import Base
from tianluo.cases.store import VERSION_TABLE


def _hash_of(w: World, username: str) -> str:
    with w.store.engine.connect() as conn:
        return conn.execute(text("SELECT password_hash FROM users WHERE username = :u"), {"u": username}).scalar_one()


def test_passwords_are_argon2id_and_checked(world: World) -> None:
    w, s = world, world.store
    digest = _hash_of(w, "analyst_a")
    assert digest.startswith("$argon2id$") and PASSWORD not in digest
    assert s.authenticate("analyst_a", PASSWORD, address="10.0.0.1") == w.u["analyst_a"]
    assert s.authenticate("analyst_a", PASSWORD + "x", address="10.0.0.1") is None
    assert s.authenticate("nobody", PASSWORD, address="10.0.0.1") is None
    s.disable_user(w.u["admin_a"], "analyst_a")
    assert s.authenticate("analyst_a", PASSWORD, address="10.0.0.1") is None
    s.disable_user(w.u["admin_a"], "analyst_a", disabled=False)
    assert s.authenticate("analyst_a", PASSWORD, address="10.0.0.1") is not None
    with pytest.raises(NotAllowed):
        s.disable_user(w.u["admin_b"], "analyst_a")  # another institution's admin
    actions = [e["action"] for e in s.audit_entries("BANK_A") if e["object_id"] == "analyst_a"]
    assert actions == ["user.create", "auth.login", "user.disable", "user.enable", "auth.login"]


def test_hashes_are_upgraded_to_the_stores_parameters_on_login(world: World) -> None:
    old = _hash_of(world, "senior_a")
    assert "m=1024,t=1,p=1" in old
    strong = open_store(world.url, clock=world.clock, password_hasher=PasswordHasher(time_cost=2, memory_cost=2048))
    try:
        assert strong.authenticate("senior_a", PASSWORD) is not None
    finally:
        strong.close()
    new = _hash_of(world, "senior_a")
    assert new != old and "m=2048,t=2" in new
    assert world.store.authenticate("senior_a", PASSWORD) is not None


def test_user_administration_rules(world: World) -> None:
    w, s = world, world.store
    made = s.create_user("new_analyst", PASSWORD, "analyst", "BANK_A", display_name="王芳", actor=w.u["admin_a"])
    assert made == User("new_analyst", "analyst", "BANK_A", "王芳")
    with pytest.raises(NotAllowed):
        s.create_user("x_b", PASSWORD, "analyst", "BANK_B", actor=w.u["admin_a"])
    with pytest.raises(NotAllowed):
        s.create_user("sup2", PASSWORD, "supervisor", "BANK_A", actor=w.u["admin_a"])
    with pytest.raises(NotAllowed):
        s.create_user("x_a", PASSWORD, "analyst", "BANK_A", actor=w.u["senior_a"])
    with pytest.raises(Conflict):
        s.create_user("new_analyst", PASSWORD, "analyst", "BANK_A")
    with pytest.raises(Invalid):
        s.create_user("short_pw", "tooshort", "analyst", "BANK_A")
    with pytest.raises(Invalid):
        s.create_user("boss", PASSWORD, "root", "BANK_A")
    with pytest.raises(Invalid):
        s.create_user("bad name", PASSWORD, "analyst", "BANK_A")
    with pytest.raises(NotFound):
        s.create_user("lost", PASSWORD, "analyst", "NO_SUCH_BANK")
    with pytest.raises(NotAllowed):
        s.create_tenant("BANK_C", actor=w.u["admin_a"])
    assert [u["username"] for u in s.list_users("BANK_B")] == ["admin_b", "analyst_b", "senior_b"]
    assert all("password_hash" not in u for u in s.list_users("BANK_A"))
    # Changing one's password needs the current one; it ends the user's sessions.
    token, _ = s.create_session("new_analyst")
    me = User("new_analyst", "analyst", "BANK_A", "王芳")
    with pytest.raises(NotAllowed):
        s.set_password(me, "new_analyst", "another long password", current_password="wrong password!")
    s.set_password(me, "new_analyst", "another long password", current_password=PASSWORD)
    assert s.resolve_session(token) is None
    assert s.authenticate("new_analyst", "another long password") == made
    s.set_password(w.u["admin_a"], "new_analyst", "reset by the admin!")
    with pytest.raises(NotAllowed):
        s.set_password(w.u["admin_b"], "new_analyst", "reset by a stranger")


def test_sessions_store_only_a_digest_and_expire(world: World) -> None:
    w, s = world, world.store
    token, expires = s.create_session("analyst_a", ttl=dt.timedelta(hours=8))
    assert expires == w.clock.now + dt.timedelta(hours=8) and len(token) >= 40
    with s.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_sha256 FROM sessions")).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()] and token not in stored
    assert s.resolve_session(token) == w.u["analyst_a"]
    assert s.resolve_session(token + "x") is None and s.resolve_session("") is None
    w.clock.advance(hours=7, minutes=59)
    assert s.resolve_session(token) is not None
    w.clock.advance(minutes=1)
    assert s.resolve_session(token) is None
    t2, _ = s.create_session("analyst_a")
    assert s.revoke_session(t2) is True and s.resolve_session(t2) is None and s.revoke_session(t2) is False
    t3, _ = s.create_session("analyst_a")
    s.disable_user(w.u["admin_a"], "analyst_a")
    assert s.resolve_session(t3) is None
    with pytest.raises(NotFound):
        s.create_session("analyst_a")  # disabled
    with pytest.raises(NotFound):
        s.create_session("nobody")


def test_login_rate_limit(world: World) -> None:
    w, s = world, world.store
    for _ in range(4):
        assert s.login_allowed("auditor_a", "192.0.2.7")
        assert s.authenticate("auditor_a", "wrong password", address="192.0.2.7") is None
    assert s.login_allowed("auditor_a", "192.0.2.7")
    assert s.authenticate("auditor_a", "wrong password", address="192.0.2.7") is None
    assert not s.login_allowed("auditor_a", "192.0.2.7")  # five failures in 15 minutes
    assert s.login_allowed("auditor_a", "192.0.2.8") and s.login_allowed("senior_a", "192.0.2.7")
    w.clock.advance(minutes=14, seconds=59)
    assert not s.login_allowed("auditor_a", "192.0.2.7")
    w.clock.advance(minutes=15)
    assert s.login_allowed("auditor_a", "192.0.2.7")
    # A success wipes the slate: only failures since the last good log-in count.
    for _ in range(4):
        s.authenticate("auditor_a", "wrong password", address="192.0.2.7")
    assert s.authenticate("auditor_a", PASSWORD, address="192.0.2.7") is not None
    s.authenticate("auditor_a", "wrong password", address="192.0.2.7")
    assert s.login_allowed("auditor_a", "192.0.2.7")


def test_tenants_are_isolated(world: World, bank: Bank, tmp_path: Path) -> None:
    w, s = world, world.store
    a, b = w.u["analyst_a"], w.u["analyst_b"]
    w.register("bank_a", bank.detected, "BANK_A")
    w.register("bank_b", bank.detected, "BANK_B")  # the same data under another institution
    res_a = s.sync_alerts("bank_a")
    with pytest.raises(NotFound):
        s.sync_alerts("bank_a", actor=w.u["admin_b"])
    s.sync_alerts("bank_b", actor=w.u["admin_b"])
    cid = res_a.case_ids[0]
    case = s.get_case(a, cid)
    alert_id = case["alerts"][0]["alert_id"]
    s.transition(a, cid, "investigating")
    s.transition(a, cid, "escalated", "confirmed by the fund flow")
    ev = s.add_evidence(a, cid, kind="file", title="x.txt", content=b"x")
    rep = s.create_report(a, case_id=cid, format="goaml", content=b"<report/>", file_name="r.xml", valid=True)
    job = s.create_job(w.u["admin_a"], "detect")
    # Tenant B sees the same alert id in its own dataset only, and none of A's objects.
    assert s.get_alert(b, alert_id)["dataset"] == "bank_b"
    assert {x["dataset"] for x in s.list_alerts(b, page_size=500)[0]} == {"bank_b"}
    for call in (
        lambda: s.get_case(b, cid),
        lambda: s.transition(b, cid, "closed_no_action", "not mine to close"),
        lambda: s.add_note(b, cid, "hello"),
        lambda: s.add_evidence(b, cid, kind="file", title="y", content=b"y"),
        lambda: s.get_evidence(b, cid, ev["id"]),
        lambda: s.assign_case(b, cid, "analyst_b"),
        lambda: s.get_report(b, rep["report_id"]),
        lambda: s.report_content(b, rep["report_id"]),
        lambda: s.approve_report(w.u["senior_b"], rep["report_id"]),
        lambda: s.get_job(b, job["id"]),
        lambda: s.get_dataset(b, "bank_a"),
        lambda: s.create_report(b, dataset="bank_a", format="camlmac_hvtr", content=b"x", file_name="h.xml",
                                valid=True),
    ):
        with pytest.raises(NotFound):
            call()
    assert s.list_reports(b) == ([], 0)
    assert all(c["dataset"] == "bank_b" for c in s.list_cases(b, page_size=500)[0])
    assert [d["name"] for d in s.datasets(b)] == ["bank_b"]
    assert not [e for e in s.audit_entries(b) if e["tenant"] != "BANK_B" or e["case_id"] == cid]
    assert s.assign_alerts(b, [alert_id], "analyst_b") == 1  # its own copy of the alert, not A's
    assert s.get_alert(a, alert_id)["assignee"] is None
    # Nothing of A changed.
    after = s.get_case(a, cid)
    assert after["status"] == "report_drafted" and after["notes"] == [] and len(after["evidence"]) == 1
    assert s.get_report(a, rep["report_id"])["status"] == "drafted"


def test_jobs(world: World) -> None:
    w, s = world, world.store
    job = s.create_job(w.u["admin_a"], "ingest")
    assert job["status"] == "queued" and job["progress"] == 0 and job["finished_at"] is None
    s.update_job(job["id"], status="running", progress=0.5, message="transactions: 1,000 rows read")
    got = s.get_job("BANK_A", job["id"])
    assert (got["status"], got["progress"], got["message"]) == ("running", 0.5, "transactions: 1,000 rows read")
    w.clock.advance(seconds=30)
    done = s.update_job(job["id"], status="succeeded", progress=1.0, result={"loaded": {"transactions": 1000}})
    assert done["finished_at"] == w.clock.now and done["result"] == {"loaded": {"transactions": 1000}}
    with pytest.raises(Invalid):
        s.update_job(job["id"], status="done")
    with pytest.raises(NotFound):
        s.get_job("BANK_A", "unknown-job")
    actions = [e["action"] for e in s.audit_entries("BANK_A") if e["object_type"] == "job"]
    assert actions == ["job.create", "job.succeeded"]  # progress is not audited, the outcome is


def test_migrations_match_the_models_and_reopening_changes_nothing(world: World) -> None:
    engine = create_engine(world.url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            diff = compare_metadata(ctx, Base.metadata)
            version = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diff == [], diff
    assert version == ["0001"]
    assert set(Base.metadata.tables) <= tables
    n = world.store.verify_audit().entries
    again = open_store(world.url, clock=world.clock, password_hasher=FAST_HASHER)
    try:
        assert again.verify_audit().entries == n and len(again.list_users("BANK_A")) == 7
    finally:
        again.close()


def test_open_store_urls(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cases.db"
    store = open_store(str(path), clock=Clock(), password_hasher=FAST_HASHER)  # a bare path is a SQLite file
    try:
        store.create_tenant("T1")
        assert path.exists() and store.list_tenants()[0]["tenant"] == "T1"
    finally:
        store.close()
    again = open_store(f"sqlite:///{path}")
    try:
        assert [t["tenant"] for t in again.list_tenants()] == ["T1"]
        with again.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        again.close()
    with pytest.raises(Invalid):
        open_store("sqlite://")
    with pytest.raises(Invalid):
        open_store("mysql://u:p@localhost/db")
    with pytest.raises(CaseError, match="cannot open the case database"):
        open_store("postgresql+psycopg://nobody:secret@127.0.0.1:1/nothing")
    assert SYSTEM.role == "system"
