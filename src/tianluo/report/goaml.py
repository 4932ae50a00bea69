"""goAML XML suspicious transaction report (UNODC goAML `<report>`, REGULATIONS.md §3.2).

goAML schemas are customised by each FIU (their code lists, some required fields); what is
written here is the common structure of the UNODC 4.x/5.x schema as several FIUs publish it,
checked against Tianluo's own subset schema `xsd/goaml.xsd`. Before filing with a real FIU,
map `GoamlCodes` to its lookup lists and validate against its XSD.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from lxml import etree

from tianluo.reference.china_ids import region_by_code
from tianluo.report._parties import (
    Parties,
    codes_from_alerts,
    default_analysis,
    default_subjects,
    evidence_order,
    with_usd,
)
from tianluo.report.codes import CHINA_TZ, GoamlCodes, country_alpha2, goaml_amount, goaml_datetime, to_decimal
from tianluo.report.model import Institution, ReportError, ReportFile, Reveal, SuspiciousReportInput
from tianluo.report.validate import checked

#: Chinese two-character surnames, so that 欧阳修 splits as 欧阳 + 修 and not 欧 + 阳修.
COMPOUND_SURNAMES = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文", "司徒",
    "夏侯", "轩辕", "端木", "独孤", "南宫", "西门", "百里", "呼延", "澹台", "太史", "申屠", "闻人",
)
PSEUDONYMISED_FIRST_NAME = "PSEUDONYMISED"


def split_name(full: str) -> tuple[str, str]:
    """(first_name, last_name) for goAML: "John Smith" → (John, Smith); 张三 → (三, 张); 欧阳修 → (修, 欧阳)."""
    full = full.strip()
    if " " in full:
        first, _, last = full.rpartition(" ")
        return first.strip(), last.strip()
    if len(full) >= 2 and all("\u4e00" <= ch <= "\u9fff" or ch == "·" for ch in full):
        surname = full[:2] if full[:2] in COMPOUND_SURNAMES and len(full) > 2 else full[:1]
        return full[len(surname):], surname
    return full, full


def _sub(parent: etree._Element, tag: str, value: object = None) -> etree._Element:
    el = etree.SubElement(parent, tag)
    if value is not None:
        el.text = str(value)
    return el


def _opt(parent: etree._Element, tag: str, value: object) -> None:
    if value is not None and str(value).strip() != "":
        _sub(parent, tag, value)


class _GoamlWriter:
    def __init__(self, institution: Institution, report: SuspiciousReportInput, reveal: Reveal | None,
                 codes: GoamlCodes | None) -> None:
        self.inst = institution
        self.codes = codes or GoamlCodes()
        self.who = Parties(institution, report.data, reveal)
        self.txns = {r["txn_id"]: r for r in with_usd(report.data.transactions).iter_rows(named=True)}

    # -- parties --

    def country(self, party: dict[str, Any] | None, *, ours: bool) -> str:
        c = country_alpha2((party or {}).get("region"))
        return c or (self.inst.country if ours or party is None else "ZZ")

    def _city(self, region: str | None) -> str:
        r = region_by_code(region) if region and region.isdigit() else None
        return r.city if r else (region or "-")

    def phones(self, parent: etree._Element, party: dict[str, Any]) -> None:
        phone = self.who.pii(party, "phone")
        if phone:
            p = _sub(_sub(parent, "phones"), "phone")
            _sub(p, "tph_contact_type", self.codes.phone_contact_type)
            _sub(p, "tph_communication_type", self.codes.phone_communication_type)
            _sub(p, "tph_number", phone)

    def addresses(self, parent: etree._Element, party: dict[str, Any], address_type: str, *, ours: bool) -> None:
        address = self.who.pii(party, "address")
        if address:
            a = _sub(_sub(parent, "addresses"), "address")
            _sub(a, "address_type", address_type)
            _sub(a, "address", address)
            _sub(a, "city", self._city(party.get("region")))
            _sub(a, "country_code", self.country(party, ours=ours))

    def person(self, parent: etree._Element, tag: str, party: dict[str, Any], *, ours: bool) -> None:
        el = _sub(parent, tag)
        _opt(el, "gender", party.get("gender") if party.get("gender") in ("M", "F") else None)
        name = self.who.pii(party, "name") or party["party_id"]
        first, last = split_name(name) if self.who.revealing else (PSEUDONYMISED_FIRST_NAME, name)
        _sub(el, "first_name", first)
        _sub(el, "last_name", last)
        _opt(el, "id_number", self.who.pii(party, "id_number"))
        country = country_alpha2(party.get("region"))
        _opt(el, "nationality1", country)
        _opt(el, "residence", country)
        self.phones(el, party)
        self.addresses(el, party, self.codes.address_type, ours=ours)

    def entity(self, parent: etree._Element, tag: str, party: dict[str, Any], *, ours: bool) -> None:
        el = _sub(parent, tag)
        _sub(el, "name", self.who.pii(party, "name") or party["party_id"])
        _opt(el, "incorporation_number", self.who.pii(party, "uscc"))
        _opt(el, "business", party.get("industry"))
        self.phones(el, party)
        self.addresses(el, party, self.codes.business_address_type, ours=ours)
        _opt(el, "incorporation_country_code", country_alpha2(party.get("region")))
        founded = party.get("founded")
        _opt(el, "incorporation_date", goaml_datetime(founded) if founded else None)

    def holder(self, parent: etree._Element, tag: str, party: dict[str, Any] | None, *, ours: bool) -> None:
        """from_person / from_entity (or to_…) for a side that is a party, not an account (cash)."""
        if party is None:
            raise ReportError(f"the {tag} side of a cash transaction has no known party")
        if party.get("kind") == "enterprise":
            self.entity(parent, f"{tag}_entity", party, ours=ours)
        else:
            self.person(parent, f"{tag}_person", party, ours=ours)

    def account(self, parent: etree._Element, tag: str, account_id: str, bank: str | None, *, ours: bool) -> None:
        acc = self.who.accounts.get(account_id) or {}
        owner = self.who.owner(account_id)
        el = _sub(parent, tag)
        _sub(el, "institution_name", self.who.bank_name(bank or acc.get("bank")) or "UNKNOWN")
        if ours:
            _opt(el, "swift", self.inst.swift)
        _sub(el, "non_bank_institution", "false")
        if ours:
            _opt(el, "branch", self.inst.branch_code)
        _sub(el, "account", account_id)
        if owner is not None:
            _opt(el, "account_name", self.who.pii(owner, "name"))
        if ours:
            _sub(el, "client_number", acc.get("party_id") or account_id)
            _sub(el, "personal_account_type", self.codes.personal_account_type.get(acc.get("type") or "", "OTHER"))
        if owner is not None:
            if owner.get("kind") == "enterprise":
                self.entity(el, "t_entity", owner, ours=ours)
            else:
                sig = _sub(el, "signatory")
                _sub(sig, "is_primary", "true")
                self.person(sig, "t_person", owner, ours=ours)
                _sub(sig, "role", self.codes.signatory_role)
        elif ours:
            raise ReportError(f"account {account_id} of this institution has no owner in the report data")
        if acc.get("opened"):
            _sub(el, "opened", goaml_datetime(acc["opened"]))
        if acc.get("closed"):
            _sub(el, "closed", goaml_datetime(acc["closed"]))
        if ours:
            closed = acc.get("closed") is not None
            _sub(el, "status_code", self.codes.account_status_closed if closed else self.codes.account_status)

    # -- transactions --

    def side(self, tx_el: etree._Element, t: dict[str, Any], which: str) -> None:
        """t_from / t_from_my_client (which = "from") or t_to / t_to_my_client (which = "to")."""
        col = "src" if which == "from" else "dst"
        other = "dst" if col == "src" else "src"
        src_ours, dst_ours = self.who.ours(t)
        account = t[f"{col}_account"]
        cash_side = t.get("channel") == "cash" and self.who.is_internal(account)
        if cash_side:
            # Cash: this side is the person paying in or taking out, not the till's GL account.
            party = self.who.owner(t[f"{other}_account"])
            ours = dst_ours if col == "src" else src_ours
        else:
            party = None
            ours = src_ours if col == "src" else dst_ours
        el = _sub(tx_el, f"t_{which}_my_client" if ours else f"t_{which}")
        funds = self.codes.funds_cash if t.get("channel") == "cash" else self.codes.funds_account
        _sub(el, f"{which}_funds_code", funds)
        currency = t["currency"]
        amount = t["amount"]
        if which == "to" and t.get("dst_currency") and t.get("dst_amount") is not None:
            currency, amount = t["dst_currency"], t["dst_amount"]
        if currency != "CNY" and t.get("amount_cny") is not None and amount:
            fc = _sub(el, f"{which}_foreign_currency")
            _sub(fc, "foreign_currency_code", currency)
            _sub(fc, "foreign_amount", goaml_amount(amount))
            rate = to_decimal(t["amount_cny"]) / to_decimal(amount)
            _sub(fc, "foreign_exchange_rate", f"{rate.quantize(to_decimal('0.000001')):f}")
        if cash_side:
            self.holder(el, which, party, ours=ours)
            _sub(el, f"{which}_country", self.country(party, ours=ours))
        else:
            self.account(el, f"{which}_account", account, t.get(f"{col}_bank"), ours=ours)
            _sub(el, f"{which}_country", self.country(self.who.owner(account), ours=ours))

    def transaction(self, parent: etree._Element, t: dict[str, Any]) -> None:
        el = _sub(parent, "transaction")
        _sub(el, "transactionnumber", t["txn_id"])
        _opt(el, "transaction_location", self.inst.city)
        description = " / ".join(x for x in (t.get("channel"), t.get("purpose")) if x)
        _opt(el, "transaction_description", description)
        _sub(el, "date_transaction", goaml_datetime(t["ts"]))
        _sub(el, "transmode_code", self.codes.transmode_code(t.get("channel")))
        if t.get("amount_cny") is None:
            raise ReportError(f"transaction {t['txn_id']} has no CNY amount (amount_cny); ingest derives it")
        _sub(el, "amount_local", goaml_amount(t["amount_cny"]))
        self.side(el, t, "from")
        self.side(el, t, "to")


def goaml_file_name(report_id: str, submitted: datetime) -> str:
    """`goAML-<report id>-<yyyymmddhhmmss>.xml`; goAML sets no file-name rule, this one is Tianluo's."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", report_id).strip("_") or "report"
    return f"goAML-{safe}-{submitted.astimezone(CHINA_TZ):%Y%m%d%H%M%S}.xml"


def goaml_report(
    institution: Institution,
    report: SuspiciousReportInput,
    *,
    reveal: Reveal | None = None,
    codes: GoamlCodes | None = None,
    submitted: datetime | None = None,
) -> ReportFile:
    """A goAML STR (`report_code` STR) of the report's evidence transactions, validated against goaml.xsd.

    One `transaction` per transaction of `report.data` (the alerts' evidence, plus any the
    investigator added). Needs `institution.goaml_rentity_id` (the FIU-assigned reporting-entity
    number). Sides that bank here are `t_from_my_client` / `t_to_my_client` with the account
    holder; a cash side is the person or entity paying in or taking out, with the cash funds code.
    """
    if not institution.goaml_rentity_id:
        raise ReportError("goAML needs the FIU-assigned reporting-entity id (Institution.goaml_rentity_id)")
    if not report.narrative.strip():
        raise ReportError("a suspicious report needs the narrative (goAML reason)")
    w = _GoamlWriter(institution, report, reveal, codes)
    submitted = submitted or datetime.now(CHINA_TZ)
    data = report.data
    subjects = list(report.subjects) if report.subjects else default_subjects(w.who, data.alerts, w.txns)
    txn_ids = evidence_order(data.alerts, w.txns)
    indicators = (
        report.goaml_indicators if report.goaml_indicators is not None
        else codes_from_alerts(data.alerts, "goaml_indicator")
    )

    root = etree.Element("report")
    _sub(root, "rentity_id", institution.goaml_rentity_id)
    _opt(root, "rentity_branch", institution.goaml_rentity_branch)
    _sub(root, "submission_code", w.codes.submission_code)
    _sub(root, "report_code", w.codes.report_code)
    _sub(root, "entity_reference", report.report_id)
    _sub(root, "submission_date", goaml_datetime(submitted))
    _sub(root, "currency_code_local", "CNY")
    rp = _sub(root, "reporting_person")
    first, last = split_name(institution.reporter_name or institution.display_name)
    _sub(rp, "first_name", first)
    _sub(rp, "last_name", last)
    if institution.reporter_phone:
        p = _sub(_sub(rp, "phones"), "phone")
        _sub(p, "tph_contact_type", "BUSINESS")
        _sub(p, "tph_communication_type", "LANDLINE")
        _sub(p, "tph_number", institution.reporter_phone)
    _opt(rp, "email", institution.reporter_email)
    _sub(rp, "occupation", "AML compliance officer")
    loc = _sub(root, "location")
    _sub(loc, "address_type", w.codes.business_address_type)
    _sub(loc, "address", institution.address or institution.display_name)
    _sub(loc, "city", institution.city or w._city(institution.region))
    _sub(loc, "country_code", institution.country)
    analysis = report.analysis if report.analysis is not None else default_analysis(data.alerts)
    reason = report.narrative.strip() + (f"\n\n{analysis.strip()}" if analysis.strip() else "")
    _sub(root, "reason", reason)
    _opt(root, "action", report.actions.strip())
    for txn_id in txn_ids:
        w.transaction(root, w.txns[txn_id])
    if indicators:
        ri = _sub(root, "report_indicators")
        for code in indicators:
            _sub(ri, "indicator", code)
    if w.who.pseudonymised:
        root.insert(0, etree.Comment(
            " Tianluo: personal data in this file are pseudonymised tokens (no reveal callback); "
            "it is for review and must not be filed. "
        ))
    content = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    info = {"report_id": report.report_id, "subjects": subjects, "transactions": len(txn_ids),
            "indicators": list(indicators)}
    return checked(goaml_file_name(report.report_id, submitted), content, "goaml",
                   pseudonymised=w.who.pseudonymised, info=info)
