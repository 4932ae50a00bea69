"""The investigator's day in headless chromium against `tianluo serve` on a simulated bank.

Each step checks what the page shows (texts, counts, states), never timings.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from lxml import etree
from playwright.sync_api import expect

from tests.ui.conftest import PASSWORD, Server


def api(server: Server, user: str, method: str, path: str, body: Any = None) -> Any:
    """The API as a bearer-token client, to pick test subjects and cross-check what the UI shows."""
    def call(m: str, p: str, b: Any, token: str | None) -> Any:
        data = json.dumps(b).encode() if b is not None else None
        req = urllib.request.Request(server.base + "/api/v1" + p, data=data, method=m)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    token = call("POST", "/auth/login", {"username": user, "password": PASSWORD}, None)["token"]
    return call(method, path, body, token)


def n_alerts(n: int) -> str:
    return f"{n:,} alert" if n == 1 else f"{n:,} alerts"


def scores(page: Any) -> list[float]:
    return [float(s) for s in page.locator("[data-testid=alert-row] [data-testid=score]").all_inner_texts()]


def test_investigation_flow(session_factory: Any, ui_server: Server) -> None:
    analyst = session_factory()
    page = analyst.goto("/alerts")
    # not logged in: the app sends us to the login page, which remembers where we were going
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)alerts$"))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    analyst.shot("login", doc=True)

    page.fill("input[name=username]", "li.na")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong user name or password.")

    # -- 1. log in; the queue is ranked by score -----------------------------------------------
    page = analyst.login("li.na")
    expect(page.get_by_test_id("current-user")).to_contain_text("李娜")
    expect(page.get_by_test_id("current-user")).to_contain_text("Analyst")
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    page.select_option("select[name=status]", "in_case")
    rows = page.get_by_test_id("alert-row")
    expect(rows.first).to_be_visible()
    total = api(ui_server, "li.na", "GET", "/alerts?status=in_case&page_size=1")["total"]
    assert total > 0
    expect(page.get_by_test_id("alert-total")).to_have_text(n_alerts(total))
    s = scores(page)
    assert len(s) == min(50, total) and s == sorted(s, reverse=True)
    top = rows.first
    top_subject = top.locator("td").nth(3).locator("a").inner_text()
    top_id = top.get_attribute("data-alert-id")
    expect(top.get_by_test_id("reasons").locator("li").first).not_to_be_empty()
    analyst.shot("queue", doc=True)

    # -- 2. open the top alert (keyboard: the first row has the focus) --------------------------
    expect(top).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/alerts/"))
    expect(page.get_by_test_id("alert-subject")).to_have_text(top_subject)
    alert = api(ui_server, "li.na", "GET", f"/alerts/{top_id}")
    graph = page.get_by_test_id("pattern-graph")
    expect(graph).to_have_attribute("data-edges", str(len(alert["txn_ids"])))
    expect(page.get_by_test_id("pattern-txns").locator("tbody tr")).to_have_count(len(alert["txn_ids"]))
    expect(page.get_by_test_id("reasons").locator("li").first).not_to_be_empty()
    analyst.shot("alert", doc=True)

    # -- 3. open its case; work it up to escalated ----------------------------------------------
    page.get_by_test_id("open-case").click()
    expect(page).to_have_url(re.compile(r"/cases/"))
    case_id = alert["case_id"]
    case = api(ui_server, "li.na", "GET", f"/cases/{case_id}")
    expect(page.get_by_test_id("case-alert-count")).to_have_text(str(case["alert_count"]))
    expect(page.get_by_test_id("case-alert")).to_have_count(min(6, len(case["alerts"])))
    expect(page.get_by_test_id("subject-accounts").locator("tr").first).to_be_visible()
    if case["status"] == "new":
        page.locator("[data-transition=investigating]").click()
        page.get_by_test_id("transition-submit").click()
        expect(page.get_by_test_id("case-status")).to_have_text("Investigating")
    page.locator("[data-transition=escalated]").click()
    page.get_by_test_id("transition-dialog").locator("textarea").fill("Funds pass through within hours; confirmed")
    page.get_by_test_id("transition-submit").click()
    expect(page.get_by_test_id("case-status")).to_have_text("Escalated")
    # the buttons follow allowed_transitions: an escalated case can no longer be "started"
    expect(page.locator("[data-transition=investigating]")).to_have_count(0)
    page.locator("[data-tab=timeline]").click()
    expect(page.get_by_test_id("timeline-table").locator("tbody tr").first).to_be_visible()
    page.locator("[data-tab=alerts]").click()
    analyst.shot("case", doc=True)
    case_url = page.url

    # -- 4. fund flow: trace from the subject, expand two hops -----------------------------------
    page.get_by_test_id("case-trace").click()
    expect(page).to_have_url(re.compile(r"/trace\?"))
    stats = page.get_by_test_id("trace-stats")
    expect(stats).to_be_visible()
    if stats.get_attribute("data-edges") == "0":
        # the subject paid nothing out in that time: follow where its money came from instead
        page.select_option("select[name=direction]", "backward")
        page.get_by_test_id("trace-run").click()
        expect(stats).not_to_have_attribute("data-edges", "0")
    direction = page.locator("select[name=direction]").input_value()
    sign = 1 if direction == "forward" else -1
    expect(stats).to_have_attribute("data-max-level" if sign > 0 else "data-min-level", str(sign))
    first_txns = int(stats.get_attribute("data-edges"))
    steps = page.get_by_test_id("trace-steps").locator("li")
    expect(steps).to_have_count(1)

    def edges() -> int:
        return int(stats.get_attribute("data-edges"))

    # hop 1 → expand an account of the last level one hop further, then one more; an account with
    # nothing beyond it within the limits adds nothing, so try the next one on that level
    for hop in (1, 2):
        before = edges()
        for row in page.locator(f"[data-testid=trace-account][data-level='{sign * hop}']").all():
            button = row.get_by_test_id("expand-fwd" if sign > 0 else "expand-back")
            expect(button).to_be_visible()
            if button.get_attribute("disabled") is not None:
                continue
            done = steps.count()
            button.click()
            expect(steps).to_have_count(done + 1)  # the expansion answered (a step is listed even if empty)
            expect(button).to_be_disabled()
            if edges() > before:
                break
        assert edges() > before, f"no account at hop {hop} leads anywhere"
    expect(stats).to_have_attribute("data-max-level" if sign > 0 else "data-min-level", str(sign * 3))
    assert int(stats.get_attribute("data-edges")) > first_txns
    expect(page.get_by_test_id("trace-steps").locator("li").first).to_contain_text("Trace")
    expect(page.get_by_test_id("flow-graph")).to_be_visible()
    analyst.shot("trace", doc=True, full_page=True)
    with page.expect_download() as dl:
        page.get_by_test_id("export-csv").click()
    csv_lines = dl.value.path().read_text(encoding="utf-8-sig").strip().splitlines()
    assert csv_lines[0] == "txn_id,ts,src_account,dst_account,amount,traced,hop,channel,sink"
    assert len(csv_lines) - 1 == int(stats.get_attribute("data-edges"))
    page.locator("[data-view=sankey]").click()
    expect(page.get_by_test_id("flow-sankey")).to_be_visible()
    with page.expect_download() as dl:
        page.get_by_test_id("export-png").click()
    assert dl.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    analyst.shot("sankey", doc=True, full_page=True)
    # the time slider hides transactions outside the range
    page.get_by_test_id("range-hi").fill("0")
    expect(stats).not_to_have_attribute("data-edges", str(len(csv_lines) - 1))

    # -- 5. close one alert as a false positive, with a reason -----------------------------------
    # (a suspicious one in another case: large-value alerts are reported, never closed as FP)
    page.goto(ui_server.base + "/alerts?status=in_case&report_kind=suspicious")
    rows = page.get_by_test_id("alert-row")
    expect(rows.first).to_be_visible()
    listed = api(ui_server, "li.na", "GET", "/alerts?status=in_case&report_kind=suspicious&page_size=50")
    expect(page.get_by_test_id("alert-total")).to_have_text(n_alerts(listed["total"]))
    index, victim_id = next((i, a["alert_id"]) for i, a in enumerate(listed["items"]) if a["case_id"] != case_id)
    for _ in range(index):
        page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.get_by_test_id("selected-count")).to_have_text("1 selected")
    expect(rows.nth(index)).to_have_attribute("data-alert-id", victim_id)
    page.get_by_test_id("bulk-close").click()
    dialog = page.get_by_test_id("fp-dialog")
    page.get_by_test_id("fp-submit").click()
    expect(dialog.get_by_role("alert")).to_have_text("Give a reason of at least 5 characters.")
    dialog.locator("textarea[name=reason]").fill("Salary of a known employer, checked with the branch")
    page.get_by_test_id("fp-submit").click()
    expect(page.get_by_test_id("toast").first).to_have_text("1 alert closed as false positive")
    expect(page.get_by_test_id("alert-total")).to_have_text(n_alerts(listed["total"] - 1))
    expect(page.locator(f"[data-alert-id='{victim_id}']")).to_have_count(0)
    page.goto(ui_server.base + f"/alerts/{victim_id}")
    expect(page.locator(".badge[data-status=closed_fp]")).to_have_text("False positive")
    expect(page.get_by_test_id("closed-reason")).to_have_text("Salary of a known employer, checked with the branch")
    expect(page.get_by_test_id("close-fp")).to_have_count(0)
    # a large-value alert offers no false-positive closing
    page.goto(ui_server.base + "/alerts?status=open&report_kind=large_value")
    expect(page.get_by_test_id("alert-row").first).to_be_visible()
    page.keyboard.press("x")
    expect(page.get_by_test_id("bulk-close")).to_be_disabled()
    page.keyboard.press("x")

    # -- 6. the analyst drafts the report --------------------------------------------------------
    page.goto(case_url)
    page.locator("[data-tab=report]").click()
    form = page.get_by_test_id("report-draft")
    form.get_by_role("button", name="Insert case facts").click()
    narrative = form.locator("textarea[name=narrative]")
    expect(narrative).to_have_value(re.compile(r"alerts .* between"))
    narrative.press("End")
    narrative.type(" Money arrived and left within hours through new counterparties.")
    page.get_by_test_id("report-submit").click()
    report = page.get_by_test_id("report").first
    expect(report).to_have_attribute("data-status", "drafted")
    expect(report.get_by_test_id("report-valid")).to_be_visible()
    expect(report).to_contain_text("li.na")
    expect(page.get_by_test_id("case-status")).to_have_text("Report drafted")
    expect(report.get_by_test_id("report-approve")).to_have_count(0)
    expect(report).to_contain_text("Waiting for a senior to approve.")
    report_id = report.get_attribute("data-report-id")

    # -- 7. a senior (another user) approves it and downloads the XML ----------------------------
    senior = session_factory()
    page2 = senior.login("wang.wei")
    page2.goto(ui_server.base + "/reports")
    expect(page2.get_by_test_id("report-row").first).to_be_visible()
    senior.shot("reports")
    row = page2.get_by_test_id("report-table").locator(f"[data-testid=report-row][data-report-id='{report_id}']")
    expect(row).to_contain_text("li.na")
    expect(row.get_by_role("link")).to_have_text(str(case_id))
    row.get_by_role("link").click()
    expect(page2.locator("[data-tab=report]")).to_have_class(re.compile(r"\bon\b"))
    card = page2.locator(f"[data-report-id='{report_id}']")
    card.get_by_test_id("report-approve").click()
    expect(card).to_have_attribute("data-status", "approved")
    expect(card.get_by_test_id("report-approver")).to_contain_text("wang.wei")
    expect(page2.get_by_test_id("case-status")).to_have_text("Approved")
    card.get_by_test_id("report-preview").click()
    preview = page2.get_by_test_id("xml-preview")
    expect(preview).to_contain_text("<?xml")
    senior.shot("case-report", doc=True)
    page2.keyboard.press("Escape")
    with page2.expect_download() as dl:
        card.get_by_test_id("report-download").click()
    name = dl.value.suggested_filename
    content = dl.value.path().read_bytes()
    assert name.lower().endswith((".xml", ".zip"))
    if name.lower().endswith(".xml"):
        root = etree.fromstring(content)
        assert root.tag  # well-formed XML
        assert content == api(ui_server, "wang.wei", "GET", f"/reports/{report_id}/preview")["xml"].encode()
    expect(page2.get_by_test_id("toast").last).to_contain_text(name)


def test_language_switch_and_chinese_glyphs(session_factory: Any, ui_server: Server) -> None:
    s = session_factory(locale="zh-CN")
    page = s.goto("/login")
    # a Chinese browser gets Chinese by default
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.fill("input[name=username]", "li.na")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="预警队列")).to_be_visible()
    expect(page.locator(".mainnav")).to_contain_text("资金链路")
    expect(page.get_by_test_id("current-user")).to_contain_text("分析员")
    expect(page.get_by_test_id("alert-row").first).to_be_visible()
    expect(page.locator("select[name=status]")).to_contain_text("待处理")
    # the glyphs are real: two different characters rasterise differently (missing fonts draw
    # the same empty box for both) in the font the page uses
    distinct = page.evaluate(
        """() => {
        const font = '32px ' + getComputedStyle(document.body).fontFamily
        const draw = (ch) => {
          const c = document.createElement('canvas'); c.width = 48; c.height = 48
          const g = c.getContext('2d'); g.font = font; g.fillStyle = '#000'; g.fillText(ch, 4, 36)
          return Array.from(g.getImageData(0, 0, 48, 48).data).join(',')
        }
        return draw('天') !== draw('罗') && draw('预') !== draw('警')
      }"""
    )
    assert distinct, "Chinese characters render as identical boxes: no CJK font"
    s.shot("queue-zh", doc=True)
    # rules write each reason in both languages: the Chinese reader gets the Chinese one (and the
    # rule's provenance line), not the English
    page.goto(ui_server.base + "/alerts?status=in_case&detector=rapid_in_out")
    reasons = page.get_by_test_id("alert-row").first.get_by_test_id("reasons")
    expect(reasons.locator("li").first).to_contain_text("内转入")
    expect(reasons).not_to_contain_text(" in and ")
    expect(reasons.locator("li").nth(1)).to_contain_text("STCR TL-S-002")

    page.get_by_test_id("lang-switch").get_by_role("button", name="EN").click()
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "en"
    page.reload()
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()  # the choice is kept
    page.get_by_test_id("lang-switch").get_by_role("button", name="中文").click()
    expect(page.get_by_role("heading", name="预警队列")).to_be_visible()


def test_queue_keyboard_navigation(session_factory: Any, ui_server: Server) -> None:
    s = session_factory()
    page = s.login("li.na")
    rows = page.get_by_test_id("alert-row")
    expect(rows.nth(3)).to_be_visible()
    ids = [r.get_attribute("data-alert-id") for r in rows.all()[:4]]
    expect(rows.nth(0)).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(rows.nth(2)).to_have_class(re.compile(r"\bfocused\b"))
    expect(rows.nth(0)).not_to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("x")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bselected\b"))
    expect(page.get_by_test_id("selected-count")).to_have_text("1 selected")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.get_by_test_id("selected-count")).to_have_text("2 selected")
    page.keyboard.press("x")
    expect(page.get_by_test_id("selected-count")).to_have_text("1 selected")
    page.keyboard.press("k")
    page.keyboard.press("x")
    expect(page.get_by_test_id("bulkbar")).to_have_count(0)
    # Enter opens the focused alert; u comes back to the same row
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/alerts/{re.escape(ids[1])}$"))
    page.keyboard.press("u")
    expect(page).to_have_url(re.compile(r"/alerts\?"))
    expect(page.get_by_test_id("alert-row").nth(1)).to_have_class(re.compile(r"\bfocused\b"))
    # typing in a filter does not move the focus
    page.keyboard.press("/")
    page.keyboard.type("jk")
    expect(page.locator("#alert-q")).to_have_value("jk")


def test_dashboards_show_the_queue_figures(session_factory: Any, ui_server: Server) -> None:
    s = session_factory()
    page = s.login("wang.wei")
    page.get_by_role("link", name="Dashboards").click()
    over = api(ui_server, "wang.wei", "GET", "/dashboard/alerts-over-time?bucket=day")
    total = sum(sum(x["counts"]) for x in over["series"])
    expect(page.get_by_test_id("kpi-alerts")).to_have_text(f"{total:,}")
    detectors = api(ui_server, "wang.wei", "GET", "/dashboard/detectors")["items"]
    page.get_by_test_id("dash-detectors").locator("summary").click()
    expect(page.get_by_test_id("dash-detectors").locator("tbody tr")).to_have_count(len(detectors))
    top = api(ui_server, "wang.wei", "GET", "/dashboard/top-parties?limit=10")["items"]
    expect(page.get_by_test_id("dash-top").locator("tbody tr")).to_have_count(max(1, len(top)))
    if top:
        expect(page.get_by_test_id("dash-top").locator("tbody tr").first).to_contain_text(top[0]["subject_id"])
    page.get_by_test_id("dash-detectors").locator("summary").click()
    s.shot("dashboard", doc=True, full_page=True)

    # the case list: every case of the institution, riskiest first
    page.get_by_role("link", name="Cases").click()
    cases = api(ui_server, "wang.wei", "GET", "/cases?page_size=50")
    expect(page.get_by_test_id("case-total")).to_have_text(
        f"{cases['total']:,} case" if cases["total"] == 1 else f"{cases['total']:,} cases")
    expect(page.get_by_test_id("case-row")).to_have_count(min(cases["total"], len(cases["items"])))
    expect(page.get_by_test_id("case-row").first).to_contain_text(cases["items"][0]["subject_id"])
    s.shot("cases")


def test_supervisor_sees_every_institution_and_nothing_else(session_factory: Any, ui_server: Server) -> None:
    s = session_factory()
    page = s.login("chen.jie", lands="**/supervisor")
    over = api(ui_server, "chen.jie", "GET", "/supervisor/overview")["items"]
    assert {r["tenant"] for r in over} == {"BANK_A", "BANK_B"}
    rows = page.get_by_test_id("supervisor-table").locator("tbody tr")
    expect(rows).to_have_count(2)
    for r in over:
        row = rows.filter(has_text=r["tenant"])
        expect(row).to_contain_text(f"{r['transactions']:,}")
        expect(row).to_contain_text(f"{r['alerts']:,}")
    expect(page.locator("nav.mainnav a")).to_have_count(1)  # no queue, cases, reports or dashboards
    s.shot("supervisor", doc=True)
    # The queue is not theirs: the API refuses it and the page says so.
    page.goto(ui_server.base + "/alerts")
    expect(page.get_by_test_id("error")).to_contain_text("Not allowed for your role")


def test_loading_states_and_error_messages(session_factory: Any, ui_server: Server) -> None:
    s = session_factory()
    page = s.login("li.na")
    expect(page.get_by_test_id("alert-row").first).to_be_visible()

    # a slow answer: the queue says it is loading until the alerts arrive
    held: list[Any] = []
    page.route(re.compile(r"/api/v1/alerts\?"), lambda route: held.append(route))
    page.goto(ui_server.base + "/alerts?status=open")
    expect(page.get_by_role("status")).to_have_text("Loading…")
    expect(page.get_by_test_id("alert-row")).to_have_count(0)
    for _ in range(100):  # the route handler runs while Playwright waits
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the queue asked for no alerts"
    for route in held:
        route.continue_()
    page.unroute(re.compile(r"/api/v1/alerts\?"))
    expect(page.get_by_test_id("alert-row").first).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)

    # a server error is said in words, with the server's message and a retry that works
    page.route(re.compile(r"/api/v1/alerts\?"), lambda route: route.fulfill(
        status=500, content_type="application/json",
        body=json.dumps({"error": "internal", "message": "database is locked"})))
    page.reload()
    error = page.get_by_test_id("error")
    expect(error).to_contain_text("Server error")
    expect(error).to_contain_text("database is locked")
    page.unroute(re.compile(r"/api/v1/alerts\?"))
    error.get_by_role("button", name="Retry").click()
    expect(page.get_by_test_id("alert-row").first).to_be_visible()
    expect(page.get_by_test_id("error")).to_have_count(0)

    # no connection
    page.route(re.compile(r"/api/v1/alerts\?"), lambda route: route.abort())
    page.reload()
    expect(page.get_by_test_id("error")).to_contain_text("The server cannot be reached")
    page.unroute(re.compile(r"/api/v1/alerts\?"))

    # something that does not exist, in Chinese too
    page.goto(ui_server.base + "/alerts/no-such-alert")
    expect(page.get_by_test_id("error")).to_contain_text("Not found")
    page.get_by_test_id("lang-switch").get_by_role("button", name="中文").click()
    expect(page.get_by_test_id("error")).to_contain_text("未找到")
    page.get_by_test_id("lang-switch").get_by_role("button", name="EN").click()
