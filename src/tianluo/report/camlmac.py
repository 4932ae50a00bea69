"""CAMLMAC XML: the bank large-value report `<HVTR>` and suspicious report `<BSTR>` (REGULATIONS.md §3.1).

Both are written field by field in the order of CAMLMAC's templates; every field is present
and takes `@N` when it does not apply or is not known (spec §9.7-4), times are China time,
amounts are exact decimals. A large-value report is cut into as many XML files as it takes
for each to fit a 5 MB ZIP, because CAMLMAC takes ZIPs of at most 5 MB.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import date, datetime
from functools import cache
from typing import Any

import polars as pl
from lxml import etree

from tianluo.report._parties import (
    Parties,
    codes_from_alerts,
    default_analysis,
    default_subjects,
    evidence_order,
    with_usd,
)
from tianluo.report.codes import (
    NA,
    CamlmacCodes,
    camlmac_date,
    camlmac_timestamp,
    china_time,
    china_today,
    format_amount,
    na,
    nationality,
    place_code,
)
from tianluo.report.model import Institution, ReportData, ReportError, ReportFile, Reveal, SuspiciousReportInput
from tianluo.report.package import MAX_ZIP_BYTES, file_name
from tianluo.report.validate import checked

PSEUDONYMISED_NOTE = (
    " Tianluo: personal data in this file are pseudonymised tokens (no reveal callback); "
    "it is for review and must not be filed. "
)
#: Bytes kept free in each ZIP for its headers when a large-value report is cut into files.
_ZIP_HEADROOM = 1024


# --- XML helpers ---------------------------------------------------------------------------------


def _leaf(parent: etree._Element, tag: str, value: object) -> etree._Element:
    el = etree.SubElement(parent, tag)
    el.text = na(value)
    return el


def _leaves(parent: etree._Element, pairs: Iterable[tuple[str, object]]) -> None:
    for tag, value in pairs:
        _leaf(parent, tag, value)


def _group(parent: etree._Element, tag: str, pairs: Iterable[tuple[str, object]]) -> etree._Element:
    el = etree.SubElement(parent, tag)
    _leaves(el, pairs)
    return el


def _repeat(parent: etree._Element, wrapper: str, tag: str, values: Iterable[object]) -> None:
    """`<Xs><X seqno="1">…</X>…</Xs>`; an empty list still has one item, `@N` (every field is present)."""
    w = etree.SubElement(parent, wrapper)
    items = [v for v in values if na(v) != NA] or [NA]
    for i, v in enumerate(dict.fromkeys(na(x) for x in items), start=1):
        el = etree.SubElement(w, tag, seqno=str(i))
        el.text = v


def _document(root: etree._Element, pseudonymised: bool) -> bytes:
    if pseudonymised:
        root.insert(0, etree.Comment(PSEUDONYMISED_NOTE))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _occupation(party: dict[str, Any] | None) -> str:
    """CTVC / SEVC: an enterprise's GB/T 4754 section letter (the canonical data keeps no occupation
    of persons, so theirs is `@N`)."""
    industry = (party or {}).get("industry") or ""
    head = industry.strip().split(" ")[0] if industry.strip() else ""
    return head if len(head) == 1 and "A" <= head <= "T" else NA


# --- one transaction ------------------------------------------------------------------------------


class _Writer:
    """Values of the transaction blocks, shared by HVTR (TSDT) and BSTR (STIF)."""

    def __init__(
        self, institution: Institution, data: ReportData, reveal: Reveal | None, codes: CamlmacCodes | None
    ) -> None:
        self.inst = institution
        self.codes = codes or CamlmacCodes()
        self.who = Parties(institution, data, reveal)
        tx = with_usd(data.transactions)
        self.txns: dict[str, dict[str, Any]] = {r["txn_id"]: r for r in tx.iter_rows(named=True)}

    def txn(self, txn_id: str) -> dict[str, Any]:
        t = self.txns.get(txn_id)
        if t is None:
            raise ReportError(
                f"evidence transaction {txn_id!r} is not in the report data (load_report_data fetches it)"
            )
        return t

    def customer_identity(self, party: dict[str, Any] | None) -> list[tuple[str, object]]:
        name, code, other, number = self.who.identity(party)
        return [("CTNM", name), ("CITP", code), ("OITP", other), ("CTID", number)]

    def blocks(self, parent: etree._Element, t: dict[str, Any], side: str, *, bstr: bool) -> None:
        """RINI, [CIIF], ATIF, TBIF, TSIF, TCIF, ROTFs of transaction `t` seen from `side`."""
        other = "dst" if side == "src" else "src"
        account = t[f"{side}_account"]
        acc = self.who.accounts.get(account) or {}
        cp_account = t[f"{other}_account"]
        cp_acc = self.who.accounts.get(cp_account) or {}
        cash = t.get("channel") == "cash" and self.who.is_internal(cp_account)
        codes = self.codes

        _group(parent, "RINI", [("FINC", self.inst.branch_code), ("RLFC", codes.rlfc)])
        if bstr:
            party = self.who.owner(account)
            _group(parent, "CIIF", [*self.customer_identity(party), ("CSNM", acc.get("party_id"))])
        atif: list[tuple[str, object]] = [
            ("CATP", codes.account_type(acc.get("type"))),
            ("CTAC", account),
            ("OATM", camlmac_timestamp(acc.get("opened"))),
        ]
        if bstr:
            atif.append(("CATM", camlmac_timestamp(acc.get("closed"))))
        # The canonical model does not say whether an account is a card, so the card fields are @N.
        atif += [("CBCT", NA), ("OCBT", NA), ("CBCN", NA)]
        _group(parent, "ATIF", atif)
        # Nobody acting for the customer (代办人) is recorded in the canonical model.
        _group(parent, "TBIF", [("TBNM", NA), ("TBIT", NA), ("OITP", NA), ("TBID", NA), ("TBNT", NA)])

        ts: datetime = t["ts"]
        tsif: list[tuple[str, object]] = [
            ("TSTM", camlmac_timestamp(ts)),
            ("TRCD", place_code(self.inst.region)),
            ("TICD", t["txn_id"]),
            ("RPMT", NA),
            ("RPMN", NA),
            ("TSTP", codes.tstp(t.get("channel"), t.get("currency"), t.get("dst_currency"))),
            ("OCTT", codes.octt.get(t.get("channel") or "", NA)),
            ("OOCT", NA),
            ("OCEC", NA),
            ("BPTC", NA),
            # The balance-of-payments code (GB/T 19583) of a cross-border payment is not in the data.
            ("TSCT", NA),
            ("TSDR", "01" if side == "dst" else "02"),
        ]
        if bstr:
            tsif += [("CRSP", t.get("purpose")), ("CRTP", t["currency"]), ("CRAT", format_amount(t["amount"]))]
        else:
            tsif += [
                ("CRPP", t.get("purpose")),
                ("CRTP", t["currency"]),
                ("CRAT", format_amount(t["amount"])),
                ("CRMB", format_amount(t.get("amount_cny"))),
                ("CUSD", format_amount(t.get("amount_usd"))),
            ]
        _group(parent, "TSIF", tsif)

        if cash:
            # Cash has no counterparty: the other side is the institution's own till.
            tcif: list[tuple[str, object]] = [(tag, NA) for tag in ("CFIN", "CFCT", "CFIC", "CFRC", "TCNM", "TCIT",
                                                                   "OITP", "TCID", "TCAT", "TCAC")]
        else:
            cp = self.who.owner(cp_account)
            name, code, other_type, number = self.who.identity(cp)
            bank = t.get(f"{other}_bank") or cp_acc.get("bank")
            tcif = [
                ("CFIN", self.who.bank_name(bank)),
                # The canonical model names the counterparty's bank but has no code or place for its branch
                # (the counterparty's own region is not where its bank is).
                ("CFCT", NA),
                ("CFIC", NA),
                ("CFRC", NA),
                ("TCNM", name),
                ("TCIT", code),
                ("OITP", other_type),
                ("TCID", number),
                ("TCAT", codes.account_type(cp_acc.get("type"))),
                ("TCAC", cp_account),
            ]
        _group(parent, "TCIF", tcif)
        _repeat(parent, "ROTFs", "ROTF", [])


# --- large-value report -------------------------------------------------------------------------------


def _lvtr_groups(w: _Writer, alerts: pl.DataFrame) -> list[tuple[str, date, dict[str, list[str]]]]:
    """(customer party, China day, {CRCD: [txn ids]}) in report order, from large-value alerts."""
    groups: dict[tuple[str, date], dict[str, dict[str, None]]] = {}
    for a in alerts.iter_rows(named=True):
        if a.get("report_kind") != "large_value" or not a.get("crcd"):
            raise ReportError(
                f"alert {a.get('alert_id')} is not a large-value alert with a CRCD code; "
                "an HVTR holds only large_value alerts (report_kind = large_value, crcd 0501-0504)"
            )
        if a["subject_type"] == "party":
            party = a["subject_id"]
        elif a["subject_type"] == "account":
            party = w.who.owner_id(a["subject_id"]) or a["subject_id"]
        else:
            raise ReportError(f"large-value alert {a['alert_id']} is about a {a['subject_type']}, not a customer")
        day = china_time(a["ts_start"]).date()
        per = groups.setdefault((party, day), {}).setdefault(a["crcd"], {})
        for txn_id in sorted(a["txn_ids"] or [], key=lambda i: (w.txn(i)["ts"], i)):
            per[txn_id] = None
    return [
        (party, day, {crcd: list(ids) for crcd, ids in sorted(per.items())})
        for (party, day), per in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def _cati(w: _Writer, party_id: str, day: date, crcds: dict[str, list[str]]) -> etree._Element:
    """One customer's day: CBIF (who), HTDT (the day), one HTCR per CRCD with its transactions."""
    party = w.who.parties.get(party_id)
    cati = etree.Element("CATI", seqno="1")
    cbif = etree.SubElement(cati, "CBIF")
    _leaf(cbif, "CSNM", party_id)
    _repeat(cbif, "CTNTs", "CTNT", [nationality((party or {}).get("region"))])
    _leaf(cbif, "CTVC", _occupation(party))
    ccif = etree.SubElement(cbif, "CCIF")
    _repeat(ccif, "CCTLs", "CCTL", [w.who.pii(party, "phone")])
    _repeat(ccif, "CTARs", "CTAR", [w.who.pii(party, "address")])
    _repeat(ccif, "CCEIs", "CCEI", [])
    _leaf(cati, "HTDT", camlmac_date(day))
    htcrs = etree.SubElement(cati, "HTCRs")
    subjects = frozenset({party_id})
    for i, (crcd, txn_ids) in enumerate(crcds.items(), start=1):
        htcr = etree.SubElement(htcrs, "HTCR", seqno=str(i))
        _leaf(htcr, "CRCD", crcd)
        _leaf(htcr, "TTNM", len(txn_ids))
        ccif = etree.SubElement(etree.SubElement(htcr, "CCIFs"), "CCIF", seqno="1")
        _leaves(ccif, w.customer_identity(party))
        tsdts = etree.SubElement(ccif, "TSDTs")
        for j, txn_id in enumerate(txn_ids, start=1):
            t = w.txn(txn_id)
            w.blocks(etree.SubElement(tsdts, "TSDT", seqno=str(j)), t, w.who.customer_side(t, subjects), bstr=False)
    return cati


def _hvtr(w: _Writer, catis: list[etree._Element]) -> bytes:
    root = etree.Element("HVTR")
    _group(root, "RBIF", [("RICD", w.inst.ricd), ("CTTN", len(catis))])
    wrapper = etree.SubElement(root, "CATIs")
    for i, cati in enumerate(catis, start=1):
        cati.set("seqno", str(i))
        wrapper.append(cati)  # moves the element: a CATI is in one file only
    return _document(root, w.who.pseudonymised)


def _deflated(content: bytes) -> int:
    return len(zlib.compress(content, 6))


def _files(w: _Writer, catis: list[etree._Element], budget: int) -> list[bytes]:
    """Cut the CATIs into as few HVTR documents as fit `budget` deflated bytes each, in order.

    Each CATI is measured once on its own; deflate of a concatenation is close to the sum of
    its parts, so files are filled to 95 % of the budget by that estimate and only a file that
    still comes out too large is halved and written again.
    """
    sizes = [_deflated(etree.tostring(c)) for c in catis]
    chunks: list[list[etree._Element]] = [[]]
    used = 0
    for cati, size in zip(catis, sizes, strict=True):
        if chunks[-1] and used + size > 0.95 * budget:
            chunks.append([])
            used = 0
        chunks[-1].append(cati)
        used += size

    def write(chunk: list[etree._Element]) -> list[bytes]:
        content = _hvtr(w, chunk)
        if len(chunk) == 1 or _deflated(content) <= budget:
            return [content]
        mid = len(chunk) // 2
        return write(chunk[:mid]) + write(chunk[mid:])

    return [content for chunk in chunks for content in write(chunk)]


def large_value_reports(
    institution: Institution,
    data: ReportData,
    *,
    report_date: date | None = None,
    first_seq: int = 1,
    action: str = "N",
    reveal: Reveal | None = None,
    codes: CamlmacCodes | None = None,
    max_zip_bytes: int = MAX_ZIP_BYTES,
) -> list[ReportFile]:
    """HVTR files for the large-value alerts in `data`, each small enough for a `max_zip_bytes` ZIP.

    One CATI per customer and China day, one HTCR per CRCD code under it, one TSDT per
    evidence transaction (a transaction meeting two codes appears under both with the same
    TICD, as the spec asks). Files are numbered `first_seq`, `first_seq + 1`, … and dated
    `report_date` (default: today in China); each is validated (see ReportFile.valid).
    """
    if data.alerts.height == 0:
        raise ReportError("no large-value alerts: nothing to report")
    w = _Writer(institution, data, reveal, codes)
    catis = [_cati(w, party, day, crcds) for party, day, crcds in _lvtr_groups(w, data.alerts)]
    day = report_date or china_today()
    contents = _files(w, catis, max_zip_bytes - _ZIP_HEADROOM)
    out = []
    for i, content in enumerate(contents):
        name = file_name(action, "camlmac-hvtr", institution.ricd, day, first_seq + i)
        info = {"report_date": day.isoformat(), "customers": content.count(b"<CATI "), "part": i + 1,
                "parts": len(contents)}
        out.append(checked(name, content, "camlmac-hvtr", pseudonymised=w.who.pseudonymised, info=info))
    return out


# --- suspicious report ------------------------------------------------------------------------------


@cache
def rule_stcr_codes() -> dict[str, str]:
    """Rule id → its STCR registration, from the built-in rule packs (a detector name is a rule id)."""
    from tianluo.detect.rules import load_rules

    return {r.id: r.stcr for r in load_rules()}


def suspicious_report(
    institution: Institution,
    report: SuspiciousReportInput,
    *,
    seq: int = 1,
    action: str = "N",
    reveal: Reveal | None = None,
    codes: CamlmacCodes | None = None,
) -> ReportFile:
    """The BSTR of one suspicious-activity report: header, subjects (SEIF) and transactions (STIF).

    Subjects default to the alerts' subjects; each transaction of `report.data` (the alerts'
    evidence, plus any the investigator added) is one STIF, seen from a subject's side. TOSC
    and STCR default to the alerts' codes and their rules' registrations. Validated before it
    is returned (see ReportFile.valid).
    """
    if action not in ("N", "C"):
        raise ReportError("a suspicious report is new (N) or a change (C); only large-value reports are deleted")
    if not report.narrative.strip():
        raise ReportError("a suspicious report needs the narrative (可疑交易特征描述, STCB)")
    data = report.data
    w = _Writer(institution, data, reveal, codes)
    subjects = list(report.subjects) if report.subjects else default_subjects(w.who, data.alerts, w.txns)
    if not subjects:
        raise ReportError("no subject: give subjects (party ids) or alerts about parties or accounts")
    unknown = [s for s in subjects if s not in w.who.parties]
    if unknown:
        raise ReportError(f"subject party {unknown[0]!r} is not in the report data")
    tosc = report.tosc if report.tosc is not None else codes_from_alerts(data.alerts, "tosc")
    if report.stcr is not None:
        stcr = report.stcr
    else:
        registered = rule_stcr_codes()
        stcr = list(dict.fromkeys(registered.get(d, d) for d in data.alerts["detector"].to_list()))
    analysis = report.analysis if report.analysis is not None else default_analysis(data.alerts)
    if report.actions.strip():
        analysis = f"{analysis}\n已采取措施：{report.actions.strip()}" if analysis.strip() else (
            f"已采取措施：{report.actions.strip()}")
    txn_ids = evidence_order(data.alerts, w.txns)

    root = etree.Element("BSTR")
    rbif = etree.SubElement(root, "RBIF")
    # TORP counts filings 1-9999 and then wraps to 0000 (spec).
    torp = str(report.torp) if report.torp < 10000 else f"{report.torp % 10000:04d}"
    _leaves(rbif, [
        ("RICD", institution.ricd), ("RPNC", institution.branch_code), ("DETR", report.detr), ("TORP", torp),
        ("ORXN", report.orxn), ("DORP", report.dorp), ("ODRP", report.odrp), ("TPTR", report.tptr),
        ("OTPR", report.otpr), ("STCB", report.narrative.strip()), ("AOSP", analysis),
    ])
    _repeat(rbif, "TOSCs", "TOSC", tosc)
    _repeat(rbif, "STCRs", "STCR", stcr)
    _leaves(rbif, [("SETN", len(subjects)), ("STNM", len(txn_ids)), ("RPNM", institution.reporter_name),
                   ("MIRS", NA)])

    seifs = etree.SubElement(root, "SEIFs")
    for i, pid in enumerate(subjects, start=1):
        party = w.who.parties[pid]
        seif = etree.SubElement(seifs, "SEIF", seqno=str(i))
        _leaves(seif, [("CSNM", pid), ("SEVC", _occupation(party))])
        name, code, other, number = w.who.identity(party)
        siif = etree.SubElement(etree.SubElement(seif, "SIIFs"), "SIIF", seqno="1")
        _leaves(siif, [("SENM", name), ("SETP", code), ("OITP", other), ("SEID", number)])
        _repeat(seif, "STNTs", "STNT", [nationality(party.get("region"))])
        scif = etree.SubElement(seif, "SCIF")
        _repeat(scif, "SCTLs", "SCTL", [w.who.pii(party, "phone")])
        _repeat(scif, "SEARs", "SEAR", [w.who.pii(party, "address")])
        _repeat(scif, "SEEIs", "SEEI", [])
        # Legal representative and controlling shareholder / actual controller are not in the canonical model.
        _group(seif, "SRIF", [(t, NA) for t in ("SRNM", "SRIT", "ORIT", "SRID", "SCNM", "SCIT", "OCIT", "SCID")])

    stifs = etree.SubElement(root, "STIFs")
    subject_set = frozenset(subjects)
    for i, txn_id in enumerate(txn_ids, start=1):
        t = w.txn(txn_id)
        w.blocks(etree.SubElement(stifs, "STIF", seqno=str(i)), t, w.who.customer_side(t, subject_set), bstr=True)

    content = _document(root, w.who.pseudonymised)
    day = report.report_date or china_today()
    name = file_name(action, "camlmac-bstr", institution.ricd, day, seq)
    info = {"report_id": report.report_id, "report_date": day.isoformat(), "subjects": subjects,
            "transactions": len(txn_ids), "tosc": tosc, "stcr": stcr}
    return checked(name, content, "camlmac-bstr", pseudonymised=w.who.pseudonymised, info=info)
