"""The SM3-chained audit trail: an untouched chain verifies; edits, removals and reordering in the DB are caught."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select, text, update

from tests.cases_support import (  # noqa: F401 - fixtures are used by name
    FAST_HASHER,
    Bank,
    World,
    bank_fixture,
    db_url_fixture,
    world_fixture,
)
from tests.pg import pg_database_fixture, pg_server_fixture  # noqa: F401
from tianluo.cases import open_store
from tianluo.cases.audit import GENESIS, entry_hash, sm3_hex
from tianluo.cases.model import AuditEntry


def test_sm3_is_the_standard_one() -> None:
    """GB/T 32905-2016 Appendix A, example 1 ("abc"): the chain really is SM3."""
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def _activity(w: World, bank: Bank) -> int:
    """Some ordinary work, so the chain has entries of every kind; returns the number of entries."""
    s, analyst, senior = w.store, w.u["analyst_a"], w.u["senior_a"]
    w.register("bank", bank.detected)
    res = s.sync_alerts("bank")
    cid = res.case_ids[0]
    s.add_note(analyst, cid, "客户经营范围与交易不符")
    s.transition(analyst, cid, "investigating")
    s.transition(analyst, cid, "escalated", "multiple counterparties, same day")
    s.create_report(analyst, case_id=cid, format="camlmac_bstr", content=b"<BSTR/>", file_name="a.xml", valid=True)
    s.transition(senior, cid, "approved")
    s.record_action(senior, "reveal", "token", "tk123", {"field": "name", "reason": "STR needs the name"})
    check = s.verify_audit()
    assert check.ok and check.first_bad_seq is None
    return check.entries


def _sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(text(stmt))


TAMPERS: dict[str, Callable[[Engine, int], int]] = {}


def tamper(fn: Callable[[Engine, int], int]) -> Callable[[Engine, int], int]:
    TAMPERS[fn.__name__] = fn
    return fn


@tamper
def edit_details(engine: Engine, n: int) -> int:
    _sql(engine, "UPDATE audit_log SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 7")
    return 7


@tamper
def edit_actor(engine: Engine, n: int) -> int:
    _sql(engine, "UPDATE audit_log SET actor = 'senior_a' WHERE seq = 5")
    return 5


@tamper
def edit_time(engine: Engine, n: int) -> int:
    with engine.begin() as conn:  # through the column type, so the value is well-formed on both backends
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 9).values(at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)))
    return 9


@tamper
def delete_middle(engine: Engine, n: int) -> int:
    _sql(engine, "DELETE FROM audit_log WHERE seq = 6")
    return 6


@tamper
def delete_last(engine: Engine, n: int) -> int:
    _sql(engine, f"DELETE FROM audit_log WHERE seq = {n}")
    return n


@tamper
def delete_and_renumber(engine: Engine, n: int) -> int:
    _sql(engine, "DELETE FROM audit_log WHERE seq = 4", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 4")
    return 4


@tamper
def reorder(engine: Engine, n: int) -> int:
    _sql(engine, "UPDATE audit_log SET seq = -1 WHERE seq = 3", "UPDATE audit_log SET seq = 3 WHERE seq = 4",
         "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    return 3


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_tampering_is_detected(world: World, bank: Bank, how: str) -> None:
    n = _activity(world, bank)
    assert n >= 12
    bad = TAMPERS[how](world.store.engine, n)
    check = world.store.verify_audit()
    assert not check.ok and check.first_bad_seq == bad, check
    assert check.problem


def test_a_rehashed_edit_is_still_caught_by_the_next_link(world: World, bank: Bank) -> None:
    """Someone who edits an entry and recomputes its hash breaks the link from the entry after it."""
    _activity(world, bank)
    with world.store.engine.begin() as conn:
        row = conn.execute(select(AuditEntry.__table__).where(AuditEntry.seq == 8)).mappings().one()
        details = '{"forged":true}'
        forged = entry_hash(seq=8, at=row["at"], tenant=row["tenant"], actor=row["actor"], action=row["action"],
                            object_type=row["object_type"], object_id=row["object_id"], case_id=row["case_id"],
                            details=details, prev_hash=row["prev_hash"])
        conn.execute(text("UPDATE audit_log SET details = :d, hash = :h WHERE seq = 8"), {"d": details, "h": forged})
    check = world.store.verify_audit()
    assert not check.ok and check.first_bad_seq == 9


def test_entries_name_what_happened(world: World, bank: Bank) -> None:
    _activity(world, bank)
    entries = world.store.audit_entries("BANK_A")
    assert entries[0]["seq"] == 1 and entries[0]["prev_hash"] == GENESIS and entries[0]["action"] == "tenant.create"
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries) if b["seq"] == a["seq"] + 1)
    reveal = entries[-1]
    assert (reveal["action"], reveal["actor"], reveal["details"]["reason"]) == ("reveal", "senior_a",
                                                                                "STR needs the name")
    assert all(e["tenant"] == "BANK_A" for e in entries)
    other = world.store.audit_entries("BANK_B")
    assert [e["action"] for e in other] == ["tenant.create", "user.create", "user.create", "user.create"]
    assert not {e["seq"] for e in entries} & {e["seq"] for e in other}


def test_concurrent_writers_do_not_fork_the_chain(world: World, bank: Bank) -> None:
    """Four threads on one store and two on a second store (its own connections) add notes at once."""
    w = world
    w.register("bank", bank.detected)
    cid = w.store.sync_alerts("bank").case_ids[0]
    before = w.store.verify_audit().entries
    other = open_store(w.url, clock=w.clock, password_hasher=FAST_HASHER)
    errors: list[BaseException] = []

    def work(store: object, who: str) -> None:
        try:
            for i in range(10):
                store.add_note(w.u[who], cid, f"note {i} from {who}")  # type: ignore[attr-defined]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w.store if i < 4 else other, "analyst_a" if i % 2 else "senior_a"))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert not errors, errors
    check = w.store.verify_audit()
    assert check.ok and check.entries == before + 60
    with w.store.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM audit_log ORDER BY seq"))]
    assert seqs == list(range(1, before + 61))
    assert len(w.store.get_case("BANK_A", cid)["notes"]) == 60


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tianluo.cases.cli", *args], capture_output=True, text=True,
                          check=False, env=env)


def test_cli_verify_audit(world: World, bank: Bank) -> None:
    n = _activity(world, bank)
    ok = _cli("verify-audit", "--db", world.url)
    assert ok.returncode == 0 and f"audit trail OK: {n} entries" in ok.stdout, ok.stderr
    edit_details(world.store.engine, n)
    bad = _cli("verify-audit", "--db", world.url)
    assert bad.returncode == 1 and "BROKEN at entry 7" in bad.stderr and "was edited" in bad.stderr
