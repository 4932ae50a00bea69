"""Alerts from a real dataset into the case store: roll-up per party, suppression across detection runs, the queue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.cases_support import (  # noqa: F401 - fixtures are used by name
    T0,
    Bank,
    PickTxns,
    World,
    bank_fixture,
    copy_dataset,
    db_url_fixture,
    world_fixture,
)
from tests.pg import pg_database_fixture, pg_server_fixture  # noqa: F401
from tianluo.cases import Invalid, NotAllowed
from tianluo.cases.queue import case_subject
from tianluo.detect.run import run_detection
from tianluo.ingest import ingest, open_reader
from tianluo.store import Dataset

FP_REASON = "核实为正常经营往来（货款），误报"


def _party_with_two_accounts(ds: Dataset) -> tuple[str, list[str], list[str]]:
    """A party, two of its accounts, and three payments from them (two from the first account)."""
    con = ds.connect()
    try:
        rows = con.execute("""
            SELECT a.party_id, a.account_id, list(t.txn_id ORDER BY t.ts, t.txn_id)[1:2] AS txns
            FROM accounts a JOIN transactions t ON t.src_account = a.account_id
            GROUP BY 1, 2 HAVING count(*) >= 2 ORDER BY 1, 2""").fetchall()
    finally:
        con.close()
    by_party: dict[str, list[tuple[str, list[str]]]] = {}
    for party, account, txns in rows:
        by_party.setdefault(party, []).append((account, txns))
    party, accts = next((p, a) for p, a in by_party.items() if len(a) >= 2)
    (acc1, t1), (acc2, t2) = accts[:2]
    return party, [acc1, acc2], [t1[0], t2[0], t1[1]]


def test_alerts_of_one_party_roll_up_into_one_case(world: World, bank: Bank, tmp_path: Path) -> None:
    w, s, analyst = world, world.store, world.u["analyst_a"]
    ds = copy_dataset(bank.plain, tmp_path / "ds")
    party, accounts, (t1, t2, t3) = _party_with_two_accounts(ds)
    w.register("bank", ds.root)
    run_detection(ds, [PickTxns([t1, t2])])  # one alert on each of the party's two accounts
    first = s.sync_alerts("bank")
    assert (first.new_alerts, first.cases_opened, first.cases_updated) == (2, 1, 0)
    case = s.get_case(analyst, first.case_ids[0])
    assert (case["subject_type"], case["subject_id"], case["party_id"]) == ("party", party, party)
    assert sorted(a["subject_id"] for a in case["alerts"]) == sorted(accounts)
    assert case["alert_count"] == 2 and case["status"] == "new" and case["sla_kind"] == "triage"
    con = ds.connect()
    amount = con.execute("SELECT sum(amount_cny) FROM transactions WHERE txn_id IN (?, ?)", [t1, t2]).fetchall()[0][0]
    con.close()
    assert case["amount_cny"] == pytest.approx(amount, abs=0.01)
    assert case["risk_score"] == pytest.approx(0.5)  # one detector, best score 0.5
    # Re-syncing finds nothing new; a closed case does not take new alerts: a new case opens.
    assert s.sync_alerts("bank").new_alerts == 0
    s.transition(analyst, case["case_id"], "closed_no_action", "activity explained by the customer")
    run_detection(ds, [PickTxns([t3])])
    second = s.sync_alerts("bank")
    assert (second.new_alerts, second.cases_opened, second.cases_updated) == (1, 1, 0)
    new_case = s.get_case(analyst, second.case_ids[0])
    assert new_case["case_id"] != case["case_id"] and new_case["subject_id"] == party
    assert s.get_case(analyst, case["case_id"])["alert_count"] == 2
    # An alert about a transaction resolves through its paying account to the same party: same open case.
    run_detection(ds, [PickTxns([t2], subject="transaction")])
    third = s.sync_alerts("bank")
    assert (third.cases_opened, third.cases_updated, third.case_ids) == (0, 1, [new_case["case_id"]])
    alerts = s.get_case(analyst, new_case["case_id"])["alerts"]
    txn_alert = next(a for a in alerts if a["subject_type"] == "transaction")
    assert txn_alert["subject_id"] == t2 and txn_alert["party_id"] == party
    actions = [e["action"] for e in s.audit_entries("BANK_A", case_id=new_case["case_id"])]
    assert actions == ["case.open", "case.alerts_added"]
    assert s.verify_audit().ok


def test_case_subject_falls_back_to_the_account() -> None:
    alert = {"subject_type": "transaction", "subject_id": "T1", "party_id": None, "account_id": "A1"}
    assert case_subject(alert) == ("account", "A1")
    assert case_subject({**alert, "party_id": "P1"}) == ("party", "P1")
    assert case_subject({**alert, "account_id": None}) == ("transaction", "T1")


@pytest.mark.parametrize(("days_later", "still_suppressed"), [(10, True), (100, False)])
def test_false_positive_is_not_realerted_until_the_suppression_ends(
    world: World, bank: Bank, tmp_path: Path, days_later: int, still_suppressed: bool
) -> None:
    """Close every case as a false positive, ingest more days, detect again with the real detectors, sync."""
    w, s, analyst = world, world.store, world.u["analyst_a"]
    ds = copy_dataset(bank.detected, tmp_path / "ds")
    w.register("bank", ds.root)
    first = s.sync_alerts("bank")
    assert first.cases_opened >= 3
    closed: dict[tuple[str, str, str], int] = {}
    for cid in first.case_ids:
        for a in s.get_case(analyst, cid)["alerts"]:
            closed[(a["detector"], a["subject_type"], a["subject_id"])] = cid
        s.transition(analyst, cid, "closed_false_positive", FP_REASON, suppress_days=90)
    seen = {a["alert_id"] for a in ds.read("alerts").to_pylist()}

    ingest(open_reader(bank.second), ds)  # the next month of the same bank
    run_detection(ds)
    new = [a for a in ds.read("alerts").to_pylist() if a["alert_id"] not in seen]
    refound = {a["alert_id"] for a in new
               if a["report_kind"] == "suspicious" and (a["detector"], a["subject_type"], a["subject_id"]) in closed}
    assert refound, "the simulated schemes go on: some closed facts must be found again"

    w.clock.advance(days=days_later)
    second = s.sync_alerts("bank")
    assert second.new_alerts == len(new)
    suppressed, n = s.list_alerts(analyst, status="suppressed", page_size=500)
    if still_suppressed:
        assert {a["alert_id"] for a in suppressed} == refound and second.suppressed == n == len(refound)
        for a in suppressed:
            assert a["case_id"] is None and a["suppressed_until"] == T0 + dt.timedelta(days=90)
            assert FP_REASON in a["closed_reason"]
        for cid in set(closed.values()):
            assert s.get_case(analyst, cid)["status"] == "closed_false_positive"
        in_new_cases = {a["alert_id"] for c in second.case_ids for a in s.get_case(analyst, c)["alerts"]}
        assert not in_new_cases & refound
    else:
        assert n == 0 and second.suppressed == 0
        for alert_id in refound:
            a = s.get_alert(analyst, alert_id)
            assert a["status"] == "in_case" and a["case_id"] not in first.case_ids
            assert s.get_case(analyst, a["case_id"])["status"] == "new"
    assert s.verify_audit().ok


def test_bulk_close_from_the_queue(world: World, bank: Bank) -> None:
    w, s, analyst = world, world.store, world.u["analyst_a"]
    w.register("bank", bank.detected)
    s.sync_alerts("bank")
    items, _ = s.list_alerts(analyst, status="in_case", sort="score", page_size=2)
    ids = [a["alert_id"] for a in items]
    with pytest.raises(Invalid):
        s.close_alerts_false_positive(analyst, ids, "no")
    with pytest.raises(NotAllowed):
        s.close_alerts_false_positive(w.u["auditor_a"], ids, FP_REASON)
    assert s.close_alerts_false_positive(w.u["analyst_b"], ids, FP_REASON) == 0  # another institution's ids
    assert s.close_alerts_false_positive(analyst, ids, FP_REASON, suppress_days=30) == 2
    for i in ids:
        a = s.get_alert(analyst, i)
        assert a["status"] == "closed_fp" and a["closed_by"] == "analyst_a"
        assert a["closed_reason"] == FP_REASON and a["suppressed_until"] == T0 + dt.timedelta(days=30)
    assert s.close_alerts_false_positive(analyst, ids, FP_REASON) == 0  # already closed: skipped
    sups = s.list_suppressions(analyst)
    assert {x["source_alert"] for x in sups} <= set(ids) and all(x["actor"] == "analyst_a" for x in sups)
    w.clock.advance(days=31)
    assert s.list_suppressions(analyst) == []


def test_queue_filters_sorting_and_pages(world: World, bank: Bank) -> None:
    w, s, analyst = world, world.store, world.u["analyst_a"]
    w.register("bank", bank.detected)
    res = s.sync_alerts("bank")
    everything, total = s.list_alerts(analyst, page_size=500)
    assert total == res.new_alerts == len(everything) > 5
    assert {a["dataset"] for a in everything} == {"bank"}
    assert [a["score"] for a in everything] == sorted((a["score"] for a in everything), reverse=True)
    pages = [a["alert_id"] for p in (1, 2, 3, 4, 5, 6) for a in s.list_alerts(analyst, page=p, page_size=3)[0]]
    assert len(pages) == len(set(pages)) == min(total, 18)
    by_amount = s.list_alerts(analyst, sort="-amount_cny", page_size=500)[0]
    amounts = [a["amount_cny"] for a in by_amount if a["amount_cny"] is not None]
    assert amounts == sorted(amounts, reverse=True)
    by_time = [a["ts_end"] for a in s.list_alerts(analyst, sort="ts_end", page_size=500)[0]]
    assert by_time == sorted(by_time)
    lv, n_lv = s.list_alerts(analyst, report_kind="large_value")
    assert n_lv == res.large_value and all(a["crcd"] and a["status"] == "open" for a in lv)
    det = everything[0]["detector"]
    assert s.list_alerts(analyst, detector=det)[1] == sum(a["detector"] == det for a in everything)
    high = s.list_alerts(analyst, min_score=0.75, max_score=1.0, page_size=500)[0]
    assert len(high) == sum(0.75 <= a["score"] <= 1.0 for a in everything)
    rich = s.list_alerts(analyst, min_amount=100_000, page_size=500)[0]
    assert len(rich) == sum((a["amount_cny"] or 0) >= 100_000 for a in everything)
    a0 = everything[-1]
    day = a0["ts_end"].astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    same_day = s.list_alerts(analyst, date_from=day, date_to=day, page_size=500)[0]
    assert a0["alert_id"] in {a["alert_id"] for a in same_day}
    assert all(a["ts_end"].astimezone(dt.timezone(dt.timedelta(hours=8))).date() == day for a in same_day)
    assert s.list_alerts(analyst, q=a0["subject_id"][2:8], page_size=500)[1] >= 1
    assert s.list_alerts(analyst, q="%", page_size=500)[1] == 0  # LIKE wildcards are literal
    assert s.list_alerts(analyst, assignee="none")[1] == total
    assert s.list_alerts(analyst, dataset="other")[1] == 0
    with pytest.raises(Invalid):
        s.list_alerts(analyst, sort="risk")
    with pytest.raises(Invalid):
        s.list_alerts(analyst, page_size=501)
    with pytest.raises(Invalid):
        s.list_alerts(analyst, status="closed")


def test_sla_deadlines_and_case_filters(world: World, bank: Bank) -> None:
    w, s, analyst = world, world.store, world.u["analyst_a"]
    w.register("bank", bank.detected)
    res = s.sync_alerts("bank")
    cid = res.case_ids[0]
    case = s.get_case(analyst, cid)
    # Opened Monday 2024-03-04 10:00 Beijing; triage: 10 working days → end of Monday 2024-03-18 (Beijing).
    assert case["due_at"] == dt.datetime(2024, 3, 18, 16, tzinfo=dt.UTC) and case["sla_state"] == "ok"
    w.clock.now = dt.datetime(2024, 3, 15, 2, tzinfo=dt.UTC)  # Friday: one working day left
    assert s.get_case(analyst, cid)["sla_state"] == "due_soon"
    assert s.list_cases(analyst, sla="due_soon")[1] == res.cases_opened
    assert s.list_cases(analyst, sla="ok")[1] == 0
    w.clock.now = dt.datetime(2024, 3, 18, 15, 59, tzinfo=dt.UTC)
    assert s.get_case(analyst, cid)["sla_state"] == "due_soon"
    w.clock.now = dt.datetime(2024, 3, 18, 16, tzinfo=dt.UTC)
    assert s.get_case(analyst, cid)["sla_state"] == "overdue"
    assert s.list_cases(analyst, sla="overdue")[1] == res.cases_opened
    # Escalated on Friday 27 Sep 2024: Sunday 29 Sep is a make-up working day, 1–7 Oct is National Day:
    # the five working days are 29 Sep, 30 Sep, 8, 9 and 10 Oct.
    w.clock.now = dt.datetime(2024, 9, 27, 3, tzinfo=dt.UTC)
    s.transition(analyst, cid, "investigating")
    out = s.transition(analyst, cid, "escalated", "fund flow confirms the suspicion")
    assert out["sla_kind"] == "report" and out["due_at"] == dt.datetime(2024, 10, 10, 16, tzinfo=dt.UTC)
    assert out["escalated_at"] == w.clock.now and out["sla_state"] == "ok"
    s.transition(analyst, res.case_ids[1], "closed_no_action", "explained by the customer")
    assert s.get_case(analyst, res.case_ids[1])["sla_state"] is None
    by_due = [c["case_id"] for c in s.list_cases(analyst, sort="due_at", status="new,escalated", page_size=500)[0]]
    assert by_due[-1] == cid and res.case_ids[1] not in by_due


def test_dashboards(world: World, bank: Bank) -> None:
    w, s, analyst = world, world.store, world.u["analyst_a"]
    w.register("bank", bank.detected)
    res = s.sync_alerts("bank")
    total = s.list_alerts(analyst, page_size=1)[1]
    # Close one case as FP and confirm another: per-detector rates follow.
    fp_case, ok_case = res.case_ids[0], res.case_ids[1]
    fp_alerts = s.get_case(analyst, fp_case)["alerts"]
    s.transition(analyst, fp_case, "closed_false_positive", FP_REASON)
    s.transition(analyst, ok_case, "investigating")
    s.transition(analyst, ok_case, "escalated", "confirmed by the fund flow")
    ok_alerts = s.get_case(analyst, ok_case)["alerts"]
    dets = {d["detector"]: d for d in s.dashboard_detectors("BANK_A")}
    assert sum(d["alerts"] for d in dets.values()) == total
    for d in dets.values():
        fp = sum(a["detector"] == d["detector"] for a in fp_alerts)
        conf = sum(a["detector"] == d["detector"] for a in ok_alerts)
        assert (d["closed_fp"], d["confirmed"]) == (fp, conf)
        assert d["fp_rate"] == (round(fp / (fp + conf), 4) if fp + conf else None)
    over = s.dashboard_alerts_over_time("BANK_A")
    assert sum(sum(x["counts"]) for x in over["series"]) == total
    days = [dt.date.fromisoformat(b) for b in over["buckets"]]
    assert days == [days[0] + dt.timedelta(days=i) for i in range(len(days))]
    weeks = s.dashboard_alerts_over_time("BANK_A", bucket="week")
    assert all(dt.date.fromisoformat(b).weekday() == 0 for b in weeks["buckets"])
    assert sum(sum(x["counts"]) for x in weeks["series"]) == total
    w.clock.advance(days=3)  # Thursday: three working days old
    ages = {b["bucket"]: b for b in s.dashboard_case_ages("BANK_A")}
    assert list(ages) == ["0-1d", "2-3d", "4-5d", ">5d"]
    assert ages["2-3d"]["ok"] == res.cases_opened - 1 and sum(sum(v for k, v in b.items() if k != "bucket")
                                                              for b in ages.values()) == res.cases_opened - 1
    top = s.dashboard_top_subjects("BANK_A", limit=3)
    assert len(top) == 3 and [t["risk_score"] for t in top] == sorted((t["risk_score"] for t in top), reverse=True)
    assert fp_case not in {t["case_id"] for t in top}
    regions = s.dashboard_regions("BANK_A")
    assert sum(r["alerts"] for r in regions) == total
    assert all(r["name"] for r in regions if r["region"])
    over_all = {o["tenant"]: o for o in s.supervisor_overview()}
    assert over_all["BANK_A"]["alerts"] == total and over_all["BANK_A"]["open_cases"] == res.cases_opened - 1
    assert over_all["BANK_A"]["transactions"] == Dataset(bank.detected).count("transactions")
    assert over_all["BANK_B"] == {"tenant": "BANK_B", "datasets": 0, "transactions": 0, "alerts": 0, "open_cases": 0,
                                  "overdue_cases": 0, "reports_filed": 0}
