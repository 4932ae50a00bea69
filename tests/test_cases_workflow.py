"""The case workflow on SQLite and PostgreSQL: every transition for every role, four eyes, FP closure, work items."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cases_support import (  # noqa: F401 - fixtures are used by name
    Bank,
    World,
    bank_fixture,
    db_url_fixture,
    world_fixture,
)
from tests.conftest import ROOT
from tests.pg import pg_database_fixture, pg_server_fixture  # noqa: F401
from tianluo.cases import Conflict, Invalid, NotAllowed, NotFound, User
from tianluo.cases.workflow import CASE_WORKERS, ROLES, STATES, edge, markdown_table

ROLE_USER = {"analyst": "analyst_a", "senior": "senior_a", "admin": "admin_a", "auditor": "auditor_a",
             "supervisor": "supervisor_a"}
REASON = "reason given for the test"


class CaseSupply:
    """Fresh cases in state `new`: each registration of the detected dataset under a new name yields a batch."""

    def __init__(self, w: World, bank: Bank) -> None:
        self.w, self.bank, self.pool, self.n = w, bank, [], 0

    def fresh(self) -> int:
        if not self.pool:
            self.n += 1
            name = f"copy{self.n}"
            self.w.register(name, self.bank.detected)
            self.pool = list(self.w.store.sync_alerts(name).case_ids)
            assert len(self.pool) >= 3, "the simulated data should give several cases per sync"
        return self.pool.pop()


def walk(w: World, cid: int, state: str) -> int:
    """Move case `cid` from new to `state` the ordinary way (an analyst drafts, seniors decide)."""
    s, analyst, senior, senior2 = w.store, w.u["analyst_a"], w.u["senior_a"], w.u["senior2_a"]
    if state in ("closed_false_positive", "closed_no_action"):
        s.transition(senior, cid, state, REASON)
        return cid
    order = ["new", "investigating", "escalated", "report_drafted", "approved", "filed"]
    for step in order[1 : order.index(state) + 1]:
        if step in ("investigating", "escalated"):
            s.transition(senior, cid, step, REASON)
        elif step == "report_drafted":
            s.create_report(analyst, case_id=cid, format="camlmac_bstr", content=b"<BSTR/>", file_name=f"{cid}.xml",
                            valid=True)
        elif step == "approved":
            s.transition(senior, cid, "approved")
        else:
            s.transition(senior2, cid, "filed")
    assert s.get_case(senior, cid)["status"] == state
    return cid


def expected_targets(source: str, role: str) -> set[str]:
    """What the docs promise: the graph's edges for the role, except drafting (done by drafting a report)."""
    return {t for t in STATES if (e := edge(source, t)) is not None and role in e.roles and t != "report_drafted"}


def test_every_transition_for_every_role(world: World, bank: Bank) -> None:
    w, s = world, world.store
    supply = CaseSupply(w, bank)
    base = {state: walk(w, supply.fresh(), state) for state in STATES}
    auditor = w.u["auditor_a"]
    performed = 0
    for role in ROLES:
        user = w.u[ROLE_USER[role]]
        for source in STATES:
            allowed = expected_targets(source, role)
            assert set(s.get_case(user, base[source])["allowed_transitions"]) == allowed, (role, source)
            for target in STATES:
                if target in allowed:
                    cid = walk(w, supply.fresh(), source)
                    out = s.transition(user, cid, target, REASON)
                    assert out["status"] == target, (role, source, target)
                    decisions = s.get_case(auditor, cid)["decisions"]
                    assert decisions[-1]["to"] == target and decisions[-1]["actor"] == user.username
                    performed += 1
                    continue
                e = edge(source, target)
                lacks_role = role not in CASE_WORKERS or (e is not None and role not in e.roles)
                refused = NotAllowed if lacks_role else Conflict
                with pytest.raises(refused):
                    s.transition(user, base[source], target, REASON)
                assert s.get_case(auditor, base[source])["status"] == source
    assert performed == 21  # analyst 8 + senior 13 edges, as the table in docs/cases.md says
    assert s.verify_audit().ok


def test_four_eyes_and_report_rejection(world: World, bank: Bank) -> None:
    w, s = world, world.store
    analyst, senior, senior2 = w.u["analyst_a"], w.u["senior_a"], w.u["senior2_a"]
    cid = walk(w, CaseSupply(w, bank).fresh(), "escalated")
    case = s.get_case(analyst, cid)
    assert case["sla_kind"] == "report" and case["due_at"] is not None
    with pytest.raises(Invalid):  # HVTR is the large-value report, not a case's
        s.create_report(analyst, case_id=cid, format="camlmac_hvtr", content=b"x", file_name="x.xml", valid=True)
    rep = s.create_report(senior, case_id=cid, format="camlmac_bstr", content=b"<BSTR/>", file_name="a.xml",
                          valid=True)
    assert rep["status"] == "drafted" and rep["drafter"] == "senior_a" and rep["due_at"] == case["due_at"]
    assert s.get_case(analyst, cid)["status"] == "report_drafted"
    with pytest.raises(NotAllowed):
        s.approve_report(analyst, rep["report_id"])  # not a senior
    with pytest.raises(NotAllowed, match="four eyes"):
        s.approve_report(senior, rep["report_id"])  # the drafter
    with pytest.raises(NotAllowed, match="four eyes"):
        s.transition(senior, cid, "approved")
    assert "approved" not in s.get_case(senior, cid)["allowed_transitions"]
    assert "approved" in s.get_case(senior2, cid)["allowed_transitions"]
    # Rejection sends the case back to escalated; a new draft goes through.
    with pytest.raises(Invalid):
        s.reject_report(senior2, rep["report_id"], "no")
    rejected = s.reject_report(senior2, rep["report_id"], "narrative lacks the fund flow")
    assert rejected["status"] == "rejected" and rejected["rejected_reason"] == "narrative lacks the fund flow"
    assert s.get_case(analyst, cid)["status"] == "escalated"
    with pytest.raises(Conflict):
        s.approve_report(senior2, rep["report_id"])
    bad = s.create_report(analyst, case_id=cid, format="goaml", content=b"<report/>", file_name="b.xml",
                          valid=False, errors=["line 3: element 'x' not expected"])
    with pytest.raises(Conflict, match="does not validate"):
        s.approve_report(senior, bad["report_id"])
    good = s.create_report(analyst, case_id=cid, format="camlmac_bstr", content=b"<BSTR>2</BSTR>", file_name="c.xml",
                           valid=True)
    assert s.approve_report(senior, good["report_id"])["approver"] == "senior_a"
    assert s.get_case(analyst, cid)["status"] == "approved"
    with pytest.raises(NotAllowed):
        s.file_report(analyst, good["report_id"])
    filed = s.file_report(senior2, good["report_id"])
    assert filed["status"] == "filed" and filed["filed_at"] is not None
    assert s.get_case(analyst, cid)["status"] == "filed"
    assert s.report_content("BANK_A", good["report_id"]) == b"<BSTR>2</BSTR>"
    items, total = s.list_reports("BANK_A", case_id=cid)
    assert total == 3 and {r["status"] for r in items} == {"rejected", "drafted", "filed"}
    actions = [e["action"] for e in s.audit_entries("BANK_A", case_id=cid)]
    assert actions.count("report.draft") == 3 and "report.approve" in actions and "report.reject" in actions
    assert s.verify_audit().ok


def test_large_value_report_without_case(world: World, bank: Bank) -> None:
    w, s = world, world.store
    w.register("bank", bank.detected)
    s.sync_alerts("bank")
    lv, total = s.list_alerts("BANK_A", report_kind="large_value")
    assert total >= 1 and all(a["case_id"] is None and a["status"] == "open" and a["due_at"] for a in lv)
    day = dt.date(2024, 1, 19)
    rep = s.create_report(w.u["senior_a"], format="camlmac_hvtr", dataset="bank", report_date=day,
                          alert_ids=[a["alert_id"] for a in lv], content=b"<HVTR/>", file_name="h.xml", valid=True)
    # Due five working days after the transactions' date: Friday 19 Jan 2024 → Friday 26 Jan 2024 (Beijing).
    assert rep["case_id"] is None and rep["due_at"] == dt.datetime(2024, 1, 26, 16, tzinfo=dt.UTC)
    with pytest.raises(Invalid):
        s.create_report(w.u["senior_a"], format="camlmac_bstr", dataset="bank", content=b"x", file_name="x.xml",
                        valid=True)
    approved = s.approve_report(w.u["senior2_a"], rep["report_id"])
    assert approved["status"] == "approved"
    with pytest.raises(Conflict):  # large-value alerts are facts to report, not suspicions to close
        s.close_alerts_false_positive(w.u["analyst_a"], [lv[0]["alert_id"]], "not really large")


def test_close_false_positive_suppresses_and_reopen_lifts(world: World, bank: Bank) -> None:
    w, s = world, world.store
    analyst, senior = w.u["analyst_a"], w.u["senior_a"]
    cid = CaseSupply(w, bank).fresh()
    alerts = s.get_case(analyst, cid)["alerts"]
    with pytest.raises(Invalid):
        s.transition(analyst, cid, "closed_false_positive", "fp")  # a reason of at least 5 characters
    s.transition(analyst, cid, "closed_false_positive", "工资代发，已核实为正常业务", suppress_days=30)
    case = s.get_case(analyst, cid)
    assert case["status"] == "closed_false_positive" and case["sla_state"] is None
    assert all(a["status"] == "closed_fp" and a["closed_by"] == "analyst_a" and a["suppressed_until"] is not None
               for a in case["alerts"])
    sups = s.list_suppressions("BANK_A")
    keys = {(a["detector"], a["subject_type"], a["subject_id"]) for a in alerts}
    assert {(x["detector"], x["subject_type"], x["subject_id"]) for x in sups} == keys
    assert all(x["actor"] == "analyst_a" and x["reason"].startswith("工资代发") and x["case_id"] == cid
               and x["until"] == w.clock.now + dt.timedelta(days=30) for x in sups)
    with pytest.raises(NotAllowed):
        s.transition(analyst, cid, "investigating", "customer complained again")  # reopening is for seniors
    s.transition(senior, cid, "investigating", "new information from the branch")
    case = s.get_case(analyst, cid)
    assert case["status"] == "investigating" and case["sla_kind"] == "triage"
    assert all(a["status"] == "in_case" for a in case["alerts"])
    assert s.list_suppressions("BANK_A") == []
    assert [d["to"] for d in case["decisions"]] == ["closed_false_positive", "investigating"]


def test_assignment_rules(world: World, bank: Bank) -> None:
    w, s = world, world.store
    analyst, analyst2, senior = w.u["analyst_a"], w.u["analyst2_a"], w.u["senior_a"]
    cid = CaseSupply(w, bank).fresh()
    ids = [a["alert_id"] for a in s.get_case(analyst, cid)["alerts"]]
    with pytest.raises(NotAllowed):
        s.assign_case(analyst, cid, "analyst2_a")  # analysts take work, seniors hand it out
    assert s.assign_case(analyst, cid, "analyst_a")["assignee"] == "analyst_a"
    assert all(a["assignee"] == "analyst_a" for a in s.get_case(analyst, cid)["alerts"])
    with pytest.raises(NotAllowed):
        s.assign_case(analyst2, cid, "analyst2_a")  # taken by someone else
    with pytest.raises(Invalid):
        s.assign_case(senior, cid, "auditor_a")  # not a case worker
    with pytest.raises(Invalid):
        s.assign_case(senior, cid, "analyst_b")  # another institution
    assert s.assign_case(senior, cid, "analyst2_a")["assignee"] == "analyst2_a"
    assert s.assign_alerts(analyst, ids, "analyst_a") == len(ids)
    mine, total = s.list_alerts(analyst, assignee="me")
    assert total == len(ids) and {a["alert_id"] for a in mine} == set(ids)
    assert s.get_case(analyst, cid)["assignee"] == "analyst_a"
    assert s.assign_alerts(analyst, ["no-such-alert"], "analyst_a") == 0
    with pytest.raises(NotAllowed):
        s.assign_alerts(w.u["auditor_a"], ids, None)
    cases, n = s.list_cases("BANK_A", assignee="analyst_a")
    assert n == 1 and cases[0]["case_id"] == cid


def test_notes_and_evidence(world: World, bank: Bank, tmp_path: Path) -> None:
    w, s = world, world.store
    analyst = w.u["analyst_a"]
    cid = CaseSupply(w, bank).fresh()
    note = s.add_note(analyst, cid, "客户称资金为货款，待核实合同。")
    ev = s.add_evidence(analyst, cid, kind="file", title="合同.pdf", content=b"%PDF-1.4 ...",
                        content_type="application/pdf")
    kept = tmp_path / "statement.csv"
    kept.write_bytes(b"date,amount\n2024-01-02,50000\n")
    ev2 = s.add_evidence(analyst, cid, kind="file", title="statement.csv", path=kept, content_type="text/csv")
    case = s.get_case(analyst, cid)
    assert case["notes"] == [note] and note["author"] == "analyst_a"
    assert [e["id"] for e in case["evidence"]] == [ev["id"], ev2["id"]]
    got = s.get_evidence(analyst, cid, ev["id"])
    assert got["content"] == b"%PDF-1.4 ..." and got["size"] == 12 and got["content_type"] == "application/pdf"
    assert s.get_evidence(analyst, cid, str(ev2["id"]))["content"].startswith(b"date,amount")
    kept.write_bytes(b"date,amount\n2024-01-02,5\n")  # the file outside the database was altered
    with pytest.raises(Conflict, match="changed since it was attached"):
        s.get_evidence(analyst, cid, ev2["id"])
    with pytest.raises(NotFound):
        s.get_evidence(analyst, cid, "unknown-evidence")
    with pytest.raises(Invalid):
        s.add_evidence(analyst, cid, kind="video", title="x", content=b"x")
    with pytest.raises(NotAllowed):
        s.add_note(w.u["auditor_a"], cid, "auditors read, they do not write")
    actions = [e["action"] for e in s.audit_entries("BANK_A", case_id=cid)]
    assert actions == ["case.open", "case.note", "case.evidence", "case.evidence"]


ACTORS = ("analyst_a", "senior_a", "senior2_a", "auditor_a")
STEP = st.tuples(st.sampled_from(ACTORS),
                 st.sampled_from([*STATES, "draft", "draft_invalid", "approve", "reject", "file"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=14))
def test_random_workflows_stay_in_the_graph(world: World, bank: Bank, steps: list[tuple[str, str]]) -> None:
    """Whatever users try, a case only ever moves along an edge its actor may take, and the audit verifies."""
    w, s = world, world.store
    supply = getattr(world, "_supply", None) or CaseSupply(w, bank)
    world._supply = supply  # type: ignore[attr-defined] - one supply across examples
    cid = supply.fresh()
    for name, action in steps:
        user: User = w.u[name]
        before = s.get_case(user, cid)
        try:
            if action in STATES:
                s.transition(user, cid, action, REASON)
            elif action.startswith("draft"):
                s.create_report(user, case_id=cid, format="goaml", content=b"<report/>", file_name="r.xml",
                                valid=action == "draft")
            else:
                reports = before["reports"]
                if not reports:
                    continue
                rid = reports[-1]["report_id"]
                if action == "approve":
                    s.approve_report(user, rid)
                elif action == "reject":
                    s.reject_report(user, rid, REASON)
                else:
                    s.file_report(user, rid)
        except (Conflict, NotAllowed, Invalid):
            assert s.get_case(user, cid)["status"] == before["status"]
            continue
        after = s.get_case(user, cid)["status"]
        assert after in STATES
        if after != before["status"]:
            e = edge(before["status"], after)
            assert e is not None and user.role in e.roles, (before["status"], after, user.role)
    decisions = s.get_case("BANK_A", cid)["decisions"]
    state = "new"
    for d in decisions:
        assert d["from"] == state and edge(d["from"], d["to"]) is not None
        state = d["to"]
    assert state == s.get_case("BANK_A", cid)["status"]
    assert s.verify_audit().ok


def test_docs_show_the_transition_table() -> None:
    doc = (ROOT / "docs" / "cases.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, "docs/cases.md: paste tianluo.cases.workflow.markdown_table() between the markers"
