"""The REST API over real HTTP: auth, the queue, the case workflow, reports, tenancy, roles, errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from tests.api_server import PASSWORD, ROLES, Deployment
from tianluo.api import permissions
from tianluo.api.security import CSRF_COOKIE, MATRIX


@pytest.fixture
def dep(api_deployment: Deployment) -> Deployment:
    return api_deployment


def _top_case_alert(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/alerts", params={"report_kind": "suspicious", "status": "in_case", "page_size": 1})
    assert r.status_code == 200, r.text
    return r.json()["items"][0]


# -- auth -----------------------------------------------------------------------------------


def test_login_me_logout(dep: Deployment) -> None:
    r = httpx.post(dep.base + "/api/v1/auth/login", json={"username": "analyst_a", "password": PASSWORD})
    assert r.status_code == 200
    token = r.json()["token"]
    assert r.json()["user"] == {"username": "analyst_a", "display_name": "analyst_a", "role": "analyst",
                                "tenant": "BANK_A"}
    h = {"Authorization": f"Bearer {token}"}
    assert httpx.get(dep.base + "/api/v1/auth/me", headers=h).json()["role"] == "analyst"
    assert httpx.post(dep.base + "/api/v1/auth/logout", headers=h).status_code == 204
    r = httpx.get(dep.base + "/api/v1/auth/me", headers=h)
    assert r.status_code == 401 and r.json()["error"] == "session_expired"


def test_bad_password_then_rate_limit(dep: Deployment) -> None:
    url = dep.base + "/api/v1/auth/login"
    codes = [httpx.post(url, json={"username": "guessed_a", "password": "wrong password"}).status_code
             for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    # Even the right password is refused while the limit holds.
    r = httpx.post(url, json={"username": "guessed_a", "password": PASSWORD})
    assert r.status_code == 429 and "15 minutes" in r.json()["message"]


def test_cookie_sessions_need_the_csrf_header(dep: Deployment) -> None:
    with httpx.Client(base_url=dep.base + "/api/v1") as c:
        r = c.post("/auth/login", json={"username": "analyst_a", "password": PASSWORD})
        assert r.status_code == 200
        assert "httponly" in r.headers.get_list("set-cookie")[0].lower()
        alert = c.get("/alerts", params={"status": "in_case", "page_size": 1}).json()["items"][0]
        r = c.post(f"/cases/{alert['case_id']}/notes", json={"text": "no CSRF header"})
        assert r.status_code == 403 and r.json()["error"] == "csrf"
        r = c.post(f"/cases/{alert['case_id']}/notes", json={"text": "with CSRF header"},
                   headers={"X-CSRF-Token": c.cookies[CSRF_COOKIE]})
        assert r.status_code == 201


def test_security_headers_and_json_errors(dep: Deployment) -> None:
    r = httpx.get(dep.base + "/api/v1/alerts")
    assert r.status_code == 401 and r.json()["error"] == "not_authenticated"
    for h in ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"):
        assert h in r.headers
    with dep.client("analyst_a") as c:
        r = c.get("/nowhere")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = c.get("/alerts", params={"min_score": 3})
        assert r.status_code == 422 and r.json()["message"].startswith("query.min_score")
        r = c.post("/alerts/bulk-close", json={"alert_ids": ["x"], "reason": "no"})
        assert r.status_code == 422 and "reason" in r.json()["message"]
        r = c.post("/trace", json={"dataset": "bank_a"})
        assert r.status_code == 422 and "exactly one of account or txn_id" in r.json()["message"]
        r = c.post("/trace", json={"dataset": "bank_a", "account": "no-such-account"})
        assert r.status_code == 404 and "no-such-account" in r.json()["message"]


# -- the queue and a case from alert to filed report ----------------------------------------


def test_alert_queue_is_ranked_filtered_and_paged(dep: Deployment) -> None:
    with dep.client("analyst_a") as c:
        r = c.get("/alerts", params={"page_size": 20})
        body = r.json()
        assert r.status_code == 200 and body["total"] > 20 and len(body["items"]) == 20
        scores = [a["score"] for a in body["items"]]
        assert scores == sorted(scores, reverse=True)
        assert all(a["dataset"] == "bank_a" and a["reasons"] for a in body["items"])
        page2 = c.get("/alerts", params={"page_size": 20, "page": 2}).json()["items"]
        assert not {a["alert_id"] for a in page2} & {a["alert_id"] for a in body["items"]}
        lv = c.get("/alerts", params={"report_kind": "large_value", "page_size": 500}).json()
        assert lv["total"] > 0 and all(a["report_kind"] == "large_value" and a["crcd"] for a in lv["items"])
        amt = c.get("/alerts", params={"min_amount": 1_000_000, "sort": "-amount_cny"}).json()["items"]
        assert all(a["amount_cny"] >= 1_000_000 for a in amt)
        a = body["items"][0]
        assert c.get(f"/alerts/{a['alert_id']}").json()["alert_id"] == a["alert_id"]
        g = c.get(f"/alerts/{a['alert_id']}/pattern").json()
        assert sorted(e["txn_id"] for e in g["edges"]) == sorted(a["txn_ids"])
        assert {n["id"] for n in g["nodes"]} >= {e["source"] for e in g["edges"]}


def test_case_workflow_report_four_eyes_and_download(dep: Deployment, tmp_path: Path) -> None:
    analyst, senior, senior2 = dep.client("analyst_a"), dep.client("senior_a"), dep.client("senior2_a")
    alert = _top_case_alert(analyst)
    cid = alert["case_id"]
    case = analyst.get(f"/cases/{cid}").json()
    assert case["status"] == "new" and alert["alert_id"] in {a["alert_id"] for a in case["alerts"]}
    assert "investigating" in case["allowed_transitions"]
    subject = analyst.get(f"/cases/{cid}/subject").json()
    assert subject["accounts"]
    timeline = analyst.get(f"/cases/{cid}/timeline").json()
    assert any(t["flagged"] for t in timeline["transactions"])

    r = analyst.post(f"/cases/{cid}/transition", json={"to": "approved", "reason": "skip ahead"})
    assert r.status_code == 409
    for to in ("investigating", "escalated"):
        r = analyst.post(f"/cases/{cid}/transition", json={"to": to, "reason": f"moving to {to}"})
        assert r.status_code == 200 and r.json()["status"] == to, r.text
    assert r.json()["due_at"]  # the 5-working-day STR deadline starts at confirmation

    # Evidence: a file and a trace.
    r = analyst.post(f"/cases/{cid}/evidence", files={"file": ("说明.txt", "客户解释材料".encode(), "text/plain")})
    assert r.status_code == 201, r.text
    ev = r.json()
    got = analyst.get(f"/cases/{cid}/evidence/{ev['id']}")
    assert got.content == "客户解释材料".encode()
    account = alert["accounts"][0]
    r = analyst.post(f"/cases/{cid}/evidence/trace",
                     json={"dataset": "bank_a", "account": account, "max_hops": 2, "min_amount": 0})
    assert r.status_code == 201 and r.json()["kind"] == "trace"

    r = analyst.post(f"/cases/{cid}/reports", json={"format": "camlmac_bstr", "narrative": "资金快进快出，疑似洗钱。"})
    assert r.status_code == 201, r.text
    rep = r.json()
    assert rep["status"] == "drafted" and rep["valid"] and rep["drafter"] == "analyst_a"
    assert re.fullmatch(r"NBSC1234567890123-\d{8}-\d{8}\.XML", rep["file_name"])
    assert analyst.get(f"/cases/{cid}").json()["status"] == "report_drafted"

    # Four eyes: an analyst may not approve; a senior who drafted may not approve their own report.
    assert analyst.post(f"/reports/{rep['report_id']}/approve").status_code == 403
    r2 = senior.post(f"/cases/{cid}/reports", json={"format": "goaml", "narrative": "senior drafts a goAML copy"})
    assert r2.status_code == 201, r2.text
    assert senior.post(f"/reports/{r2.json()['report_id']}/approve").status_code == 403
    r = senior2.post(f"/reports/{rep['report_id']}/approve")
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["approver"] == "senior2_a"
    r = senior2.post(f"/reports/{rep['report_id']}/file")
    assert r.status_code == 200 and r.json()["status"] == "filed"
    assert analyst.get(f"/cases/{cid}").json()["status"] == "filed"

    xml = analyst.get(f"/reports/{rep['report_id']}/download")
    assert xml.status_code == 200 and rep["file_name"] in xml.headers["content-disposition"]
    root = etree.fromstring(xml.content)
    assert root.tag == "BSTR" and root.findtext("RBIF/RICD") == "C1234567890123"
    assert analyst.get(f"/reports/{rep['report_id']}/preview").json()["xml"].startswith("<?xml")

    trail = analyst.get(f"/cases/{cid}/audit").json()["items"]
    actions = [e["action"] for e in trail]
    assert len(actions) >= 8 and all(e["hash"] for e in trail)
    auditor = dep.client("auditor_a")
    v = auditor.get("/audit/verify").json()
    assert v["ok"] and v["entries"] >= len(trail)


def test_bulk_close_as_false_positive_and_assign(dep: Deployment) -> None:
    c = dep.client("analyst_a")
    items = c.get("/alerts", params={"status": "in_case", "sort": "score", "page_size": 200}).json()["items"]
    # Two low-scored alerts of untouched cases (the workflow test files a report on another case).
    fresh = {a["case_id"] for a in items if c.get(f"/cases/{a['case_id']}").json()["status"] == "new"}
    ids = [a["alert_id"] for a in items if a["case_id"] in fresh][:2]
    assert len(ids) == 2
    r = c.post("/alerts/bulk-assign", json={"alert_ids": ids, "assignee": "analyst_a"})
    assert r.status_code == 200 and r.json()["updated"] == 2
    mine = c.get("/alerts", params={"assignee": "me", "page_size": 500}).json()["items"]
    assert set(ids) <= {a["alert_id"] for a in mine}
    reason = "工资代发，已核实为正常业务"
    r = c.post("/alerts/bulk-close", json={"alert_ids": ids, "reason": reason, "suppress_days": 30})
    assert r.status_code == 200 and r.json()["closed"] == 2, r.text
    for i in ids:
        a = c.get(f"/alerts/{i}").json()
        assert a["status"] == "closed_fp" and a["closed_reason"].startswith("工资代发") and a["suppressed_until"]
    again = c.post("/alerts/bulk-close", json={"alert_ids": ids, "reason": "closing twice does nothing"})
    assert again.json()["closed"] == 0


def test_trace_endpoint_and_csv(dep: Deployment) -> None:
    c = dep.client("analyst_a")
    alert = _top_case_alert(c)
    body = {"dataset": "bank_a", "account": alert["accounts"][0], "max_hops": 3, "min_amount": 0}
    t = c.post("/trace", json=body).json()
    assert t["nodes"] and t["summary"]
    for e in t["edges"]:
        assert e["traced"] <= e["amount"] + 0.01
    csv = c.post("/trace.csv", json=body)
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("txn_id")
    assert len(csv.text.strip().splitlines()) == len(t["edges"]) + 1


def _finished(client: httpx.Client, job: dict) -> dict:
    """Poll a background job until it ends (bounded: a stuck job fails the test, not the suite)."""
    for _ in range(600):
        job = client.get(f"/jobs/{job['id']}").json()
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    return job


def test_admin_jobs_detect_and_ingest(dep: Deployment, tmp_path: Path) -> None:
    admin = dep.client("admin_a")
    r = admin.post("/datasets/bank_a/detect")
    assert r.status_code == 202
    job = _finished(admin, r.json())
    assert job["status"] == "succeeded", job
    assert job["result"]["new_alerts"] == 0  # same data, same detectors: nothing new
    bad = admin.post("/datasets/bank_a/ingest", files={"file": ("x.csv", b"", "text/csv")})
    assert bad.status_code == 400 and "empty" in bad.json()["message"]
    assert dep.client("analyst_a").post("/datasets/bank_a/detect").status_code == 403
    # An upload lands as a job; its rows are in the dataset afterwards.
    from tests.conftest import ROOT

    before = admin.get("/datasets/bank_a").json()["transactions"]
    xml = (ROOT / "tests" / "data" / "iso20022" / "pacs008_multi.xml").read_bytes()
    r = admin.post("/datasets/bank_a/ingest", files={"file": ("pacs008_multi.xml", xml, "application/xml")})
    assert r.status_code == 202, r.text
    job = _finished(admin, r.json())
    assert job["status"] == "succeeded", job
    assert admin.get("/datasets/bank_a").json()["transactions"] > before


def test_active_queue_is_one_sorted_page_of_several_states(dep: Deployment) -> None:
    c = dep.client("analyst_a")
    both = c.get("/alerts", params={"status": "open,in_case", "page_size": 500}).json()
    one = [c.get("/alerts", params={"status": s, "page_size": 500}).json() for s in ("open", "in_case")]
    assert both["total"] == one[0]["total"] + one[1]["total"]
    assert {a["status"] for a in both["items"]} <= {"open", "in_case"}
    scores = [a["score"] for a in both["items"]]
    assert scores == sorted(scores, reverse=True)
    assert c.get("/alerts", params={"status": "open,nonsense"}).status_code == 422
    case = c.get(f"/cases/{_top_case_alert(c)['case_id']}").json()
    assert case["can_draft_report"] == (case["status"] in ("escalated", "report_drafted"))
    assert dep.client("auditor_a").get(f"/cases/{case['case_id']}").json()["can_draft_report"] is False


def test_jobs_per_institution_are_limited() -> None:
    from tianluo.api.errors import ApiError
    from tianluo.api.service import Jobs

    jobs = Jobs(store=None)
    for _ in range(Jobs.MAX_PENDING):
        jobs.reserve("BANK_A")
    jobs.reserve("BANK_B")  # another institution has its own slots
    with pytest.raises(ApiError) as exc:
        jobs.reserve("BANK_A")
    assert exc.value.status == 429
    jobs.release("BANK_A")
    jobs.reserve("BANK_A")
    jobs.shutdown()


def test_large_value_report_of_a_day(dep: Deployment) -> None:
    """A senior generates the day's HVTR: valid against the XSD, real values revealed, numbered in sequence."""
    import datetime as dt

    from lxml import etree

    from tianluo.report import parse_file_name, validate_report

    senior = dep.client("senior_a")
    lv = senior.get("/alerts", params={"report_kind": "large_value", "dataset": "bank_a", "page_size": 1,
                                        "sort": "-amount_cny"}).json()["items"]
    assert lv, "the simulated bank has large-value candidates"
    ts = dt.datetime.fromisoformat(lv[0]["ts_end"]).astimezone(dt.timezone(dt.timedelta(hours=8)))
    r = senior.post("/reports/large-value", json={"dataset": "bank_a", "date": ts.date().isoformat()})
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    assert items and all(i["format"] == "camlmac_hvtr" and i["valid"] and i["case_id"] is None for i in items)
    seqs = []
    for item in items:
        parts = parse_file_name(item["file_name"])
        assert parts and parts["kind"] == "BH" and parts["ricd"] == "C1234567890123"
        seqs.append(int(parts["seq"]))
        body = senior.get(f"/reports/{item['report_id']}/download").content
        assert validate_report(body).valid
        names = [e.text or "" for e in etree.fromstring(body).iter("{*}CTNM", "CTNM")]
        assert names and not any(n.startswith("tk") for n in names), names[:3]  # a senior's file is revealed
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # A second report of the same day takes the next numbers, never the same ones.
    again = senior.post("/reports/large-value", json={"dataset": "bank_a", "date": ts.date().isoformat()}).json()
    assert int(parse_file_name(again["items"][0]["file_name"])["seq"]) > max(seqs)
    assert dep.client("analyst_a").post("/reports/large-value", json={"dataset": "bank_a", "date": "2026-01-01"}
                                        ).status_code == 403
    empty = senior.post("/reports/large-value", json={"dataset": "bank_a", "date": "1999-01-01"})
    assert empty.status_code == 404 and "no large-value candidates" in empty.json()["message"]


def test_reveal_is_for_allowed_roles_with_a_reason(dep: Deployment) -> None:
    senior = dep.client("senior_a")
    alert = _top_case_alert(senior)
    subject = senior.get(f"/cases/{alert['case_id']}/subject").json()
    party = subject["party"]
    assert party and party["name"].startswith("tk")
    body = {"dataset": "bank_a", "field": "name", "token": party["name"], "reason": "STR narrative needs the name"}
    r = senior.post("/reveal", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["value"] and not r.json()["value"].startswith("tk")
    assert dep.client("analyst_a").post("/reveal", json=body).status_code == 403
    wrong = senior.post("/reveal", json={**body, "field": "phone"})
    assert wrong.status_code == 404


# -- tenants and roles ----------------------------------------------------------------------


def test_tenants_never_see_each_other(dep: Deployment) -> None:
    a, b = dep.client("analyst_a"), dep.client("analyst_b")
    alert_a = _top_case_alert(a)
    assert [d["name"] for d in b.get("/datasets").json()["items"]] == ["bank_b"]
    assert b.get(f"/alerts/{alert_a['alert_id']}").status_code == 404
    assert b.get(f"/cases/{alert_a['case_id']}").status_code == 404
    assert b.get(f"/cases/{alert_a['case_id']}/audit").status_code == 404
    assert b.post(f"/cases/{alert_a['case_id']}/notes", json={"text": "hi"}).status_code == 404
    assert b.post("/trace", json={"dataset": "bank_a", "account": alert_a["accounts"][0]}).status_code == 404
    assert {x["dataset"] for x in b.get("/alerts", params={"page_size": 500}).json()["items"]} == {"bank_b"}
    reps = a.get("/reports").json()["items"]
    for rep in reps:
        assert b.get(f"/reports/{rep['report_id']}").status_code == 404
        assert b.get(f"/reports/{rep['report_id']}/download").status_code == 404
    ids = [x["alert_id"] for x in a.get("/alerts", params={"status": "in_case", "page_size": 3}).json()["items"]]
    assert b.post("/alerts/bulk-close", json={"alert_ids": ids, "reason": "not mine to close"}).json()["closed"] == 0
    sup = dep.client("supervisor_a")
    over = sup.get("/supervisor/overview").json()["items"]
    assert {o["tenant"] for o in over} == {"BANK_A", "BANK_B"}
    assert all(o["alerts"] > 0 for o in over)
    assert sup.get("/alerts").status_code == 403


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), "unknown-id")), path)


def test_authorisation_matrix_every_endpoint_every_role(dep: Deployment) -> None:
    """Every (endpoint, role): 403 exactly when the role lacks the endpoint's permission."""
    from tianluo.api import create_app

    app = create_app(dep.workspace, ui=False)
    routes = permissions(app)
    open_routes = {k for k, v in routes.items() if v is None}
    assert open_routes == {("POST", "/api/v1/auth/login"), ("GET", "/api/v1/health")}
    a = dep.client("analyst_a")
    alert = _top_case_alert(a)
    ids = {"alert_id": alert["alert_id"], "case_id": alert["case_id"], "name": "bank_a",
           "report_id": "unknown-report", "evidence_id": "unknown-evidence", "job_id": "unknown-job"}
    checked = 0
    for (method, path), perm in sorted(routes.items()):
        if perm is None or path == "/api/v1/auth/logout":
            continue
        url = _fill(path, ids).removeprefix("/api/v1")
        for role in ROLES:
            with dep.client(f"{role}_a") as c:
                r = c.request(method, url, json={} if method == "POST" else None)
            allowed = role in MATRIX[perm]
            assert (r.status_code == 403) != allowed or (allowed and r.status_code == 403
                                                         and r.json()["error"] != "forbidden"), \
                f"{method} {path} as {role}: {r.status_code} {r.text[:200]}"
            assert r.status_code < 500, f"{method} {path} as {role}: {r.status_code}"
            checked += 1
    assert checked >= 5 * 35


def test_docs_print_the_current_matrix() -> None:
    from tests.conftest import ROOT
    from tianluo.api.security import matrix_markdown

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert "<!-- matrix:start -->\n" + matrix_markdown() + "<!-- matrix:end -->" in text
