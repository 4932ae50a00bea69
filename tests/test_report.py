"""Regulator-format reports: CAMLMAC HVTR/BSTR and goAML, checked field by field on a tiny bank and against the XSDs."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lxml import etree
from typer.testing import CliRunner

from tests.conftest import ROOT, TEST_KEY
from tianluo.detect.rules import RuleDetector, load_rules
from tianluo.detect.run import run_detection
from tianluo.ingest import ingest, open_reader
from tianluo.report import (
    MAX_ZIP_BYTES,
    NA,
    DailySequence,
    Institution,
    ReportData,
    ReportError,
    SuspiciousReportInput,
    file_name,
    format_amount,
    goaml_report,
    large_value_alerts,
    large_value_reports,
    load_report_data,
    package_zips,
    parse_file_name,
    suspicious_report,
    validate_report,
    write_report,
)
from tianluo.report.cli import app
from tianluo.report.codes import camlmac_date, camlmac_timestamp, goaml_amount, na, place_code
from tianluo.report.goaml import split_name
from tianluo.report.model import PII_FIELDS
from tianluo.report.package import renumber
from tianluo.store import Dataset

DATA = ROOT / "tests" / "data" / "report"
INSTITUTION = Institution.from_toml(DATA / "institution.toml")
DAY = date(2025, 1, 2)  # China day of T001 (2025-01-01T17:30Z), T002 and T003
REPORT_DATE = date(2025, 1, 3)


# --- the tiny bank: ingested from tests/data/report, rules run once per module -----------------------------


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataset]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIANLUO_MASTER_KEY", TEST_KEY)
        mp.setenv("TIANLUO_KEYRING", str(tmp_path_factory.mktemp("keys") / "keyring.json"))
        ds = Dataset(tmp_path_factory.mktemp("report") / "ds", create=True)
        ingest(open_reader(DATA), ds)
        run_detection(ds, [RuleDetector(load_rules())])
        yield ds


@pytest.fixture(scope="module")
def clear_values(bank: Dataset) -> dict[tuple[str, str], str]:
    """(field, token) → clear value, by joining the stored tokens with the source CSV."""
    with open(DATA / "parties.csv", encoding="utf-8") as fh:
        source = {row["party_id"]: row for row in csv.DictReader(fh)}
    out = {}
    for row in bank.read("parties").to_pylist():
        for field in PII_FIELDS:
            if row[field]:
                out[(field, row[field])] = source[row["party_id"]][field]
    return out


class Revealer:
    """A reveal callback that records every call, as an auditing caller would."""

    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.calls: list[tuple[str, str]] = []

    def __call__(self, field: str, token: str) -> str:
        self.calls.append((field, token))
        return self.values[(field, token)]


def alerts_of(ds: Dataset, detector: str) -> list[dict[str, Any]]:
    return [a for a in ds.read("alerts").to_pylist() if a["detector"] == detector]


def root_of(content: bytes) -> etree._Element:
    return etree.fromstring(content)


def fields(el: etree._Element) -> dict[str, str]:
    """Leaf children of an element: tag → text."""
    return {c.tag: c.text for c in el if isinstance(c.tag, str) and len(c) == 0}


def tsdt(root: etree._Element, ticd: str) -> etree._Element:
    hits = [t for t in root.iter("TSDT", "STIF") if t.findtext("TSIF/TICD") == ticd]
    assert len(hits) == 1, ticd
    return hits[0]


# --- value formats ---------------------------------------------------------------------------------------


def test_china_time_dates_and_timestamps() -> None:
    assert camlmac_timestamp(datetime(2025, 1, 1, 17, 30, tzinfo=UTC)) == "20250102013000"
    assert camlmac_timestamp(datetime(2025, 1, 1, 17, 30)) == "20250102013000"  # naive is UTC, as stored
    assert camlmac_date(datetime(2025, 1, 1, 15, 59, 59, tzinfo=UTC)) == "20250101"
    assert camlmac_date(datetime(2025, 1, 1, 16, 0, tzinfo=UTC)) == "20250102"
    assert camlmac_timestamp(date(2015, 3, 1)) == "20150301tttttt"  # unknown time digits are "t" (§9.7-6)
    assert camlmac_timestamp(None) == camlmac_date(None) == NA


def test_amounts_are_exact_decimals() -> None:
    assert format_amount(0.1 + 0.2) == "0.30"  # not 0.30000000000000004
    assert format_amount(50000) == "50000.00"
    assert format_amount(1296.5) == "1296.50"
    assert format_amount(520000.1) == "520000.10"
    assert format_amount(1.2345) == "1.235"  # half up at the third decimal, from the decimal text
    assert format_amount(2.675) == "2.675"
    assert goaml_amount(2.675) == "2.68"  # Decimal(2.675) would be 2.67499999… and round down
    assert format_amount(Decimal("0.0005")) == "0.001"
    assert format_amount(10**17) == "100000000000000000.00"  # 20 digits: the limit
    with pytest.raises(ValueError, match="20 digits"):
        format_amount(10**18)
    with pytest.raises(ValueError, match="negative"):
        format_amount(-1)
    assert format_amount(None) == format_amount(float("nan")) == NA


def test_na_and_places() -> None:
    assert na(None) == na("") == na("  ") == na(float("nan")) == NA
    assert na(0) == "0"
    assert place_code("110101") == "CHN110101"
    assert place_code("HK") == "HKG000000"
    assert place_code("XX") == NA and place_code(None) == NA


def test_split_name_for_goaml() -> None:
    assert split_name("张三") == ("三", "张")
    assert split_name("欧阳修") == ("修", "欧阳")
    assert split_name("John Ronald Smith") == ("John Ronald", "Smith")


def test_institution_is_checked() -> None:
    with pytest.raises(ReportError, match="14 upper-case"):
        Institution(ricd="C123")
    with pytest.raises(ReportError, match="GB/T 2260"):
        Institution(ricd="C1234567890123", region="1101")
    assert INSTITUTION.bank_id == "TLBANK" and INSTITUTION.goaml_rentity_id == "1234"


# --- data loading ---------------------------------------------------------------------------------------


def test_large_value_alerts_are_taken_by_china_day(bank: Dataset) -> None:
    alerts = large_value_alerts(bank, DAY)
    assert sorted((a["subject_id"], a["crcd"]) for a in alerts) == [("E1", "0502"), ("P1", "0501"), ("P1", "0503")]
    # T001 happened on 2025-01-01 in UTC but on 2025-01-02 in China: it is not a 1 January alert.
    assert large_value_alerts(bank, date(2025, 1, 1)) == []


def test_load_report_data_fetches_evidence_and_refuses_missing(bank: Dataset) -> None:
    data = load_report_data(bank, large_value_alerts(bank, DAY))
    assert data.transactions["txn_id"].to_list() == ["T001", "T002", "T003"]
    assert set(data.accounts["account_id"]) == {
        "6222660000000001", "6212260000000009", "31100000000000001", "HK0001234567", "CASH"
    }
    assert set(data.parties["party_id"]) == {"P1", "X1", "E1", "F1", "BANK"}
    broken = {**large_value_alerts(bank, DAY)[0], "txn_ids": ["T001", "NOPE"]}
    with pytest.raises(ReportError, match="NOPE"):
        load_report_data(bank, [broken])


# --- HVTR ------------------------------------------------------------------------------------------------


def test_hvtr_field_by_field(bank: Dataset, clear_values: dict[tuple[str, str], str]) -> None:
    reveal = Revealer(clear_values)
    files = large_value_reports(
        INSTITUTION, load_report_data(bank, large_value_alerts(bank, DAY)), report_date=REPORT_DATE, reveal=reveal
    )
    assert len(files) == 1
    f = files[0]
    assert f.valid, f.errors
    assert not f.pseudonymised
    assert f.file_name == "NBHC1234567890123-20250103-00000001.XML"
    assert f.content.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = root_of(f.content)
    assert fields(root.find("RBIF")) == {"RICD": "C1234567890123", "CTTN": "2"}
    catis = root.findall("CATIs/CATI")
    assert [(c.get("seqno"), c.findtext("CBIF/CSNM")) for c in catis] == [("1", "E1"), ("2", "P1")]

    e1 = catis[0]
    assert e1.findtext("CBIF/CTNTs/CTNT") == "CHN" and e1.find("CBIF/CTNTs/CTNT").get("seqno") == "1"
    assert e1.findtext("CBIF/CTVC") == "I"  # GB/T 4754 section of 信息传输、软件和信息技术服务业
    assert e1.findtext("CBIF/CCIF/CCTLs/CCTL") == "01065550000"
    assert e1.findtext("CBIF/CCIF/CTARs/CTAR") == "北京市朝阳区建国路88号"
    assert e1.findtext("CBIF/CCIF/CCEIs/CCEI") == NA
    assert e1.findtext("HTDT") == "20250102"
    htcr = e1.find("HTCRs/HTCR")
    assert (htcr.get("seqno"), htcr.findtext("CRCD"), htcr.findtext("TTNM")) == ("1", "0502", "1")
    assert fields(htcr.find("CCIFs/CCIF")) == {
        "CTNM": "北京天罗科技有限公司", "CITP": "610099", "OITP": NA, "CTID": "91110105MA01ABCD5F"
    }
    t3 = tsdt(root, "T003")
    assert fields(t3.find("RINI")) == {"FINC": "110000001", "RLFC": "00"}
    assert fields(t3.find("ATIF")) == {
        "CATP": "620001", "CTAC": "31100000000000001", "OATM": "20120110tttttt", "CBCT": NA, "OCBT": NA, "CBCN": NA
    }
    assert set(fields(t3.find("TBIF")).values()) == {NA}
    assert fields(t3.find("TSIF")) == {
        "TSTM": "20250102140000", "TRCD": "CHN110101", "TICD": "T003", "RPMT": NA, "RPMN": NA, "TSTP": "010131",
        "OCTT": NA, "OOCT": NA, "OCEC": NA, "BPTC": NA, "TSCT": NA, "TSDR": "02", "CRPP": "货款", "CRTP": "USD",
        "CRAT": "250000.00", "CRMB": "1824872.50", "CUSD": "250000.00",
    }
    assert fields(t3.find("TCIF")) == {
        "CFIN": "HSBC_HK", "CFCT": NA, "CFIC": NA, "CFRC": NA, "TCNM": "PACIFIC RIM TRADING LIMITED",
        "TCIT": "629999", "OITP": "境外机构证件", "TCID": "CR1234567", "TCAT": "620001", "TCAC": "HK0001234567",
    }
    assert [(r.get("seqno"), r.text) for r in t3.findall("ROTFs/ROTF")] == [("1", NA)]

    p1 = catis[1]
    htcrs = [(h.findtext("CRCD"), h.findtext("TTNM")) for h in p1.findall("HTCRs/HTCR")]
    assert htcrs == [("0501", "1"), ("0503", "1")]
    assert fields(p1.find("HTCRs/HTCR/CCIFs/CCIF")) == {
        "CTNM": "张三", "CITP": "110001", "OITP": NA, "CTID": "110101199003071233"
    }
    cash = tsdt(root, "T001")  # a cash deposit at 2025-01-01T17:30Z
    assert cash.findtext("TSIF/TSTM") == "20250102013000"
    assert cash.findtext("TSIF/TSDR") == "01" and cash.findtext("TSIF/TSTP") == "000000"
    assert (cash.findtext("TSIF/CRAT"), cash.findtext("TSIF/CUSD")) == ("60000.00", "8249.30")
    assert set(fields(cash.find("TCIF")).values()) == {NA}  # cash has no counterparty
    transfer = tsdt(root, "T002")
    assert fields(transfer.find("TSIF"))["CRAT"] == "520000.10"
    assert fields(transfer.find("TSIF"))["TSDR"] == "02"
    assert fields(transfer.find("TCIF")) == {
        "CFIN": "ICBC", "CFCT": NA, "CFIC": NA, "CFRC": NA, "TCNM": "李四", "TCIT": "110001", "OITP": NA,
        "TCID": "310115198511204566", "TCAT": "120001", "TCAC": "6212260000000009",
    }
    # Every PII value came through the callback, each token once, and nothing else was asked for.
    assert {field for field, _ in reveal.calls} == set(PII_FIELDS)
    assert len(reveal.calls) == len(set(reveal.calls))


def test_hvtr_without_reveal_is_pseudonymised(bank: Dataset) -> None:
    data = load_report_data(bank, large_value_alerts(bank, DAY))
    f = large_value_reports(INSTITUTION, data, report_date=REPORT_DATE)[0]
    assert f.valid, f.errors
    assert f.pseudonymised
    root = root_of(f.content)
    assert "pseudonymised" in root[0].text and isinstance(root[0], etree._Comment)
    tokens = {r["party_id"]: r for r in bank.read("parties").to_pylist()}
    ccif = root.find("CATIs/CATI/HTCRs/HTCR/CCIFs/CCIF")
    assert ccif.findtext("CTNM") == tokens["E1"]["name"] and ccif.findtext("CTNM").startswith("tk1.")
    assert ccif.findtext("CTID") == tokens["E1"]["uscc"]
    assert ccif.findtext("CITP") == NA  # a token does not say what kind of document it stands for
    assert "张三" not in f.content.decode()


def test_every_field_is_present_and_at_n_when_unknown(bank: Dataset) -> None:
    data = load_report_data(bank, large_value_alerts(bank, DAY))
    root = root_of(large_value_reports(INSTITUTION, data, report_date=REPORT_DATE)[0].content)
    leaves = [el for el in root.iter() if isinstance(el.tag, str) and len(el) == 0]
    assert leaves and all(el.text and el.text.strip() for el in leaves)
    # Each TSDT has the template's 6 blocks and 45 fields, whatever the data holds.
    for t in root.iter("TSDT"):
        assert [c.tag for c in t] == ["RINI", "ATIF", "TBIF", "TSIF", "TCIF", "ROTFs"]
        assert sum(1 for el in t.iter() if len(el) == 0) == 2 + 6 + 5 + 17 + 10 + 1


def test_one_transaction_under_two_codes_keeps_its_business_id(bank: Dataset) -> None:
    base = load_report_data(bank, large_value_alerts(bank, DAY))
    twice = base.alerts.filter(pl.col("crcd") == "0503").with_columns(crcd=pl.lit("0501"), alert_id=pl.lit("x"))
    data = ReportData(pl.concat([base.alerts, twice]), base.transactions, base.accounts, base.parties)
    f = large_value_reports(INSTITUTION, data, report_date=REPORT_DATE)[0]
    assert f.valid, f.errors
    p1 = root_of(f.content).findall("CATIs/CATI")[1]
    codes = {h.findtext("CRCD"): [t.findtext("TSIF/TICD") for t in h.iter("TSDT")] for h in p1.iter("HTCR")}
    assert codes == {"0501": ["T001", "T002"], "0503": ["T002"]}
    assert p1.findtext("HTCRs/HTCR/TTNM") == "2"


def test_hvtr_refuses_suspicious_alerts(bank: Dataset) -> None:
    data = load_report_data(bank, alerts_of(bank, "structuring_cash_near_threshold"))
    with pytest.raises(ReportError, match="large_value"):
        large_value_reports(INSTITUTION, data)


# --- BSTR ------------------------------------------------------------------------------------------------


def structuring_input(bank: Dataset, **kw: Any) -> SuspiciousReportInput:
    return SuspiciousReportInput(
        report_id="CASE-0001",
        data=load_report_data(bank, alerts_of(bank, "structuring_cash_near_threshold")),
        narrative="客户张三于2025年1月5日、6日两次存入现金，金额均略低于5万元大额标准。",
        actions="已将客户风险等级调整为高风险，限制非柜面业务。",
        report_date=REPORT_DATE,
        **kw,
    )


def test_bstr_field_by_field(bank: Dataset, clear_values: dict[tuple[str, str], str]) -> None:
    f = suspicious_report(INSTITUTION, structuring_input(bank), seq=7, reveal=Revealer(clear_values))
    assert f.valid, f.errors
    assert f.file_name == "NBSC1234567890123-20250103-00000007.XML" and not f.pseudonymised
    root = root_of(f.content)
    rbif = root.find("RBIF")
    head = fields(rbif)
    assert {k: head[k] for k in ("RICD", "RPNC", "DETR", "TORP", "ORXN", "DORP", "ODRP", "TPTR", "OTPR")} == {
        "RICD": "C1234567890123", "RPNC": "110000001", "DETR": "01", "TORP": "1", "ORXN": NA, "DORP": "01",
        "ODRP": NA, "TPTR": "01", "OTPR": NA,
    }
    assert head["STCB"].startswith("客户张三于2025年1月5日")
    assert head["AOSP"].startswith("structuring_cash_near_threshold：")
    assert head["AOSP"].endswith("已采取措施：已将客户风险等级调整为高风险，限制非柜面业务。")
    assert [(t.get("seqno"), t.text) for t in rbif.findall("TOSCs/TOSC")] == [("1", "0802")]
    assert [t.text for t in rbif.findall("STCRs/STCR")] == ["TL-S-001"]
    assert (head["SETN"], head["STNM"], head["RPNM"], head["MIRS"]) == ("1", "2", "王五", NA)
    assert [c.tag for c in rbif] == ["RICD", "RPNC", "DETR", "TORP", "ORXN", "DORP", "ODRP", "TPTR", "OTPR", "STCB",
                                     "AOSP", "TOSCs", "STCRs", "SETN", "STNM", "RPNM", "MIRS"]
    seif = root.find("SEIFs/SEIF")
    assert (seif.findtext("CSNM"), seif.findtext("SEVC")) == ("P1", NA)
    assert fields(seif.find("SIIFs/SIIF")) == {
        "SENM": "张三", "SETP": "110001", "OITP": NA, "SEID": "110101199003071233"
    }
    assert seif.findtext("STNTs/STNT") == "CHN"
    assert seif.findtext("SCIF/SCTLs/SCTL") == "13800138000"
    assert seif.findtext("SCIF/SEARs/SEAR") == "北京市东城区东华门大街1号"
    assert set(fields(seif.find("SRIF")).values()) == {NA}
    stifs = root.findall("STIFs/STIF")
    assert [(s.get("seqno"), s.findtext("TSIF/TICD")) for s in stifs] == [("1", "T005"), ("2", "T006")]
    s = stifs[0]
    assert [c.tag for c in s] == ["RINI", "CIIF", "ATIF", "TBIF", "TSIF", "TCIF", "ROTFs"]
    assert fields(s.find("CIIF")) == {
        "CTNM": "张三", "CITP": "110001", "OITP": NA, "CTID": "110101199003071233", "CSNM": "P1"
    }
    assert fields(s.find("ATIF"))["CATM"] == NA and fields(s.find("ATIF"))["OATM"] == "20150301tttttt"
    assert fields(s.find("TSIF")) == {
        "TSTM": "20250105100000", "TRCD": "CHN110101", "TICD": "T005", "RPMT": NA, "RPMN": NA, "TSTP": "000000",
        "OCTT": NA, "OOCT": NA, "OCEC": NA, "BPTC": NA, "TSCT": NA, "TSDR": "01", "CRSP": "现金存款",
        "CRTP": "CNY", "CRAT": "48000.00",
    }


def test_bstr_codes_and_routing_can_be_set(bank: Dataset) -> None:
    inp = structuring_input(bank, tosc=["1201", "0802"], stcr=["MY-STCR-9"], detr="02", torp=10001,
                            dorp="99", odrp="同时报送当地公安机关经侦部门")
    root = root_of(suspicious_report(INSTITUTION, inp).content)
    assert [t.text for t in root.iter("TOSC")] == ["1201", "0802"]
    assert [t.text for t in root.iter("STCR")] == ["MY-STCR-9"]
    assert root.findtext("RBIF/DETR") == "02" and root.findtext("RBIF/TORP") == "0001"
    assert root.findtext("RBIF/ODRP") == "同时报送当地公安机关经侦部门"


def test_bstr_evidence_is_the_report_data(bank: Dataset) -> None:
    """Transactions an investigator adds are reported; one an alert cites but the data lacks is an error."""
    inp = structuring_input(bank)
    extra = load_report_data(bank, [{**alerts_of(bank, "structuring_cash_near_threshold")[0], "txn_ids": ["T007"]}])
    inp.data = ReportData(inp.data.alerts, pl.concat([inp.data.transactions, extra.transactions]),
                          inp.data.accounts, inp.data.parties)
    root = root_of(suspicious_report(INSTITUTION, inp).content)
    assert [s.findtext("TSIF/TICD") for s in root.iter("STIF")] == ["T005", "T006", "T007"]
    assert root.findtext("RBIF/STNM") == "3"
    assert root.find("STIFs/STIF[3]/TSIF/TSDR").text == "02"  # the cash withdrawal
    inp.data = ReportData(inp.data.alerts, inp.data.transactions.filter(pl.col("txn_id") != "T006"),
                          inp.data.accounts, inp.data.parties)
    with pytest.raises(ReportError, match="T006"):
        suspicious_report(INSTITUTION, inp)


def test_bstr_needs_a_narrative_and_no_delete(bank: Dataset) -> None:
    blank = SuspiciousReportInput(report_id="x", data=structuring_input(bank).data, narrative="  ")
    with pytest.raises(ReportError, match="narrative"):
        suspicious_report(INSTITUTION, blank)
    with pytest.raises(ReportError, match="deleted"):
        suspicious_report(INSTITUTION, structuring_input(bank), action="D")


def test_subjects_default_to_the_alerts_subjects(bank: Dataset) -> None:
    """A transaction-level alert's subject is the customer on the side that banks here."""
    from tianluo.report import alerts_frame

    base = load_report_data(bank, alerts_of(bank, "pboc_lvtr_0503_person_domestic_transfer"))
    about_txn = base.alerts.with_columns(subject_type=pl.lit("transaction"), subject_id=pl.lit("T002"),
                                         report_kind=pl.lit("suspicious"), crcd=pl.lit(None, pl.String))
    data = ReportData(about_txn, base.transactions, base.accounts, base.parties)
    f = suspicious_report(INSTITUTION, SuspiciousReportInput(report_id="t", data=data, narrative="购房款来源不明"))
    assert f.valid, f.errors
    assert f.info["subjects"] == ["P1"]  # T002 is paid out of P1's account here; X1 banks at ICBC
    stif = root_of(f.content).find("STIFs/STIF")
    assert stif.findtext("CIIF/CSNM") == "P1" and stif.findtext("TSIF/TSDR") == "02"
    no_subject = alerts_frame([{**about_txn.to_dicts()[0], "subject_type": "transaction", "subject_id": "NOPE"}])
    with pytest.raises(ReportError, match="no subject"):
        suspicious_report(INSTITUTION, SuspiciousReportInput(
            report_id="t", data=ReportData(no_subject, base.transactions, base.accounts, base.parties), narrative="x"))


# --- goAML -----------------------------------------------------------------------------------------------


def test_goaml_field_by_field(bank: Dataset, clear_values: dict[tuple[str, str], str]) -> None:
    alerts = alerts_of(bank, "structuring_cash_near_threshold") + alerts_of(bank, "pboc_lvtr_0502_enterprise_transfer")
    inp = SuspiciousReportInput(report_id="CASE-0002", data=load_report_data(bank, alerts),
                                narrative="拆分现金存款及大额跨境汇出。", actions="已冻结非柜面渠道。")
    f = goaml_report(INSTITUTION, inp, reveal=Revealer(clear_values),
                     submitted=datetime(2025, 1, 3, 1, 0, tzinfo=UTC))
    assert f.valid, f.errors
    assert f.file_name == "goAML-CASE-0002-20250103090000.xml" and not f.pseudonymised
    root = root_of(f.content)
    assert [c.tag for c in root][:12] == [
        "rentity_id", "submission_code", "report_code", "entity_reference", "submission_date",
        "currency_code_local", "reporting_person", "location", "reason", "action", "transaction", "transaction",
    ]
    head = fields(root)
    assert head["rentity_id"] == "1234" and head["report_code"] == "STR" and head["submission_code"] == "E"
    assert head["entity_reference"] == "CASE-0002" and head["submission_date"] == "2025-01-03T09:00:00"
    assert head["currency_code_local"] == "CNY" and head["action"] == "已冻结非柜面渠道。"
    assert head["reason"].startswith("拆分现金存款及大额跨境汇出。")
    assert fields(root.find("reporting_person"))["last_name"] == "王"
    assert fields(root.find("location")) == {
        "address_type": "BUSINESS", "address": "北京市东城区长安街1号", "city": "北京市", "country_code": "CN"
    }
    assert [i.text for i in root.findall("report_indicators/indicator")] == ["SPOS"]
    txns = {t.findtext("transactionnumber"): t for t in root.findall("transaction")}
    assert list(txns) == ["T003", "T005", "T006"]

    wire = txns["T003"]
    assert fields(wire)["date_transaction"] == "2025-01-02T14:00:00"
    assert fields(wire)["amount_local"] == "1824872.50" and fields(wire)["transmode_code"] == "WIRE"
    src = wire.find("t_from_my_client")
    assert fields(src) == {"from_funds_code": "ACCOUNT", "from_country": "CN"}
    assert fields(src.find("from_foreign_currency")) == {
        "foreign_currency_code": "USD", "foreign_amount": "250000.00", "foreign_exchange_rate": "7.299490"
    }
    acc = src.find("from_account")
    assert fields(acc) == {
        "institution_name": "天罗测试银行", "non_bank_institution": "false", "branch": "110000001",
        "account": "31100000000000001", "account_name": "北京天罗科技有限公司", "client_number": "E1",
        "personal_account_type": "BUSINESS", "opened": "2012-01-10T00:00:00", "status_code": "ACTIVE",
    }
    assert fields(acc.find("t_entity"))["incorporation_number"] == "91110105MA01ABCD5F"
    dst = wire.find("t_to")  # HSBC Hong Kong: not this institution's client
    assert wire.find("t_to_my_client") is None
    assert dst.findtext("to_country") == "HK"
    assert fields(dst.find("to_account"))["institution_name"] == "HSBC_HK"
    assert dst.findtext("to_account/t_entity/name") == "PACIFIC RIM TRADING LIMITED"

    cash = txns["T005"]
    src = cash.find("t_from_my_client")  # the customer paying cash in
    assert src.findtext("from_funds_code") == "CASH"
    person = fields(src.find("from_person"))
    assert (person["first_name"], person["last_name"], person["id_number"]) == ("三", "张", "110101199003071233")
    assert person["gender"] == "M" and person["nationality1"] == "CN"
    assert src.findtext("from_person/phones/phone/tph_number") == "13800138000"
    assert cash.findtext("t_to_my_client/to_account/signatory/t_person/last_name") == "张"


def test_goaml_needs_the_reporting_entity_id(bank: Dataset) -> None:
    inst = Institution(ricd="C1234567890123")
    with pytest.raises(ReportError, match="rentity"):
        goaml_report(inst, structuring_input(bank))


def test_goaml_without_reveal_is_pseudonymised(bank: Dataset) -> None:
    f = goaml_report(INSTITUTION, structuring_input(bank))
    assert f.valid, f.errors
    assert f.pseudonymised
    text = f.content.decode()
    assert "110101199003071233" not in text and "13800138000" not in text and "东华门" not in text
    assert root_of(f.content).findtext(".//from_person/first_name") == "PSEUDONYMISED"


# --- the schemas can fail ---------------------------------------------------------------------------------


def _mutate(content: bytes, fn: Any) -> bytes:
    root = etree.fromstring(content)
    fn(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_schemas_reject_broken_documents(bank: Dataset) -> None:
    hvtr = large_value_reports(INSTITUTION, load_report_data(bank, large_value_alerts(bank, DAY)))[0].content
    assert validate_report(hvtr).valid

    def drop(path: str) -> Any:
        return lambda r: r.find(path).getparent().remove(r.find(path))

    def put(path: str, value: str) -> Any:
        return lambda r: setattr(r.find(path), "text", value)

    broken = {
        "missing RICD": (drop("RBIF/RICD"), "RICD"),
        "ISO date": (put("CATIs/CATI/HTDT", "2025-01-02"), "HTDT"),
        "month 13": (put(".//TSTM", "20251302013000"), "TSTM"),
        "4 decimals": (put(".//CRAT", "1.2345"), "CRAT"),
        "@N for a code that must be known": (put(".//CRCD", NA), "CRCD"),
        "missing seqno": (lambda r: r.find(".//CTNT").attrib.pop("seqno"), "seqno"),
        "empty field": (put(".//TBNM", ""), "TBNM"),
        "wrong count": (put("RBIF/CTTN", "3"), "CTTN"),
        "seqno not from 1": (lambda r: r.find(".//CATI").set("seqno", "2"), "seqno"),
        "other type undescribed": (put(".//TCIT", "129999"), "OITP"),
    }
    for what, (fn, needle) in broken.items():
        res = validate_report(_mutate(hvtr, fn))
        assert not res.valid, what
        assert any(needle in e for e in res.errors), (what, res.errors)

    bstr = suspicious_report(INSTITUTION, structuring_input(bank)).content
    res = validate_report(_mutate(bstr, put("RBIF/STNM", "5")))
    assert not res.valid and any("STNM" in e for e in res.errors)
    res = validate_report(_mutate(bstr, put("RBIF/STCB", "长" * 10001)))
    assert not res.valid and any("STCB" in e for e in res.errors)
    goaml = goaml_report(INSTITUTION, structuring_input(bank)).content
    res = validate_report(_mutate(goaml, drop("rentity_id")))
    assert not res.valid and any("rentity_id" in e for e in res.errors)
    res = validate_report(_mutate(goaml, put("transaction/date_transaction", "2025-01-05")))
    assert not res.valid and any("date_transaction" in e for e in res.errors)
    assert not validate_report(b"<HVTR><RBIF>").valid
    assert not validate_report(b"<other/>").valid
    # A CAMLMAC file must declare UTF-8.
    latin = validate_report(hvtr.replace(b"encoding='UTF-8'", b"encoding='ISO-8859-1'", 1))
    assert not latin.valid and any("UTF-8" in e for e in latin.errors)


def test_an_independent_validator_agrees(bank: Dataset) -> None:
    """xmlschema (another XSD 1.0 implementation) accepts the schemas and the generated files."""
    import xmlschema

    from tianluo.report.validate import XSD_DIR, XSD_FILES

    data = load_report_data(bank, large_value_alerts(bank, DAY))
    docs = {
        "camlmac-hvtr": large_value_reports(INSTITUTION, data)[0].content,
        "camlmac-bstr": suspicious_report(INSTITUTION, structuring_input(bank)).content,
        "goaml": goaml_report(INSTITUTION, structuring_input(bank)).content,
    }
    for fmt, content in docs.items():
        schema = xmlschema.XMLSchema10(str(XSD_DIR / XSD_FILES[fmt]))
        assert schema.is_valid(content.decode("utf-8")), fmt
        broken = content.replace(b"<RICD>C1234567890123</RICD>", b"<RICD>C123</RICD>").replace(
            b"<rentity_id>1234</rentity_id>", b"<rentity_id>x</rentity_id>")
        assert not schema.is_valid(broken.decode("utf-8")), fmt


# --- names, sequence, ZIP, writing ------------------------------------------------------------------------


def test_file_names_and_daily_sequence(tmp_path: Path) -> None:
    assert file_name("N", "camlmac-hvtr", "C0000000000001", date(2018, 7, 1), 10) == (
        "NBHC0000000000001-20180701-00000010.XML"
    )
    assert parse_file_name("NBSC0000000000001-20180801-00000001.ZIP") == {
        "action": "N", "kind": "BS", "ricd": "C0000000000001", "day": "20180801", "seq": 1, "ext": "ZIP"
    }
    with pytest.raises(ReportError, match="only large-value"):
        file_name("D", "camlmac-bstr", "C0000000000001", date(2018, 7, 1), 1)
    seq = DailySequence(tmp_path)
    d1, d2 = date(2025, 1, 2), date(2025, 1, 3)
    assert seq.take("C0000000000001", d1, 3) == 1
    assert seq.take("C0000000000001", d1) == 4
    assert seq.take("C0000000000001", d2) == 1  # restarts each day
    assert seq.take("C0000000000001", d1, ext="ZIP") == 1  # ZIPs count separately
    assert seq.take("C9999999999999", d1) == 1  # per institution
    assert DailySequence(tmp_path).take("C0000000000001", d1) == 5  # kept across runs
    # A lost state file cannot make a duplicate: files already in the folder raise the floor.
    (tmp_path / ".tianluo-report-sequence.json").unlink()
    (tmp_path / "NBHC0000000000001-20250102-00000041.XML").write_text("x")
    assert DailySequence(tmp_path).take("C0000000000001", d1) == 42


def test_write_report_refuses_invalid_and_overwrites(bank: Dataset, tmp_path: Path) -> None:
    f = suspicious_report(INSTITUTION, structuring_input(bank))
    path = write_report(f, tmp_path)
    assert path.read_bytes() == f.content and validate_report(path).valid
    with pytest.raises(ReportError, match="already exists"):
        write_report(f, tmp_path)
    bad = renumber([f], 2)[0]
    bad.content = _mutate(bad.content, lambda r: r.find("RBIF").remove(r.find("RBIF/RICD")))
    res = validate_report(bad.content)
    bad.valid, bad.errors = res.valid, res.errors
    with pytest.raises(ReportError, match="failed validation"):
        write_report(bad, tmp_path)
    assert not (tmp_path / bad.file_name).exists()
    assert write_report(bad, tmp_path, force=True).exists()


def _big_bank(n_customers: int, per_customer: int) -> ReportData:
    """Large-value alerts of many customers with high-entropy tokens, so the XML compresses like real data."""
    import secrets

    tok = lambda: "tk1." + secrets.token_hex(16)  # noqa: E731
    ts = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)
    parties = [{"party_id": f"P{i}", "kind": "person", "name": tok(), "id_number": tok(), "phone": tok(),
                "address": tok(), "region": "110101"} for i in range(n_customers)]
    accounts = [{"account_id": f"A{i}", "party_id": f"P{i}", "bank": "TLBANK", "type": "personal"}
                for i in range(n_customers)] + [{"account_id": "CASH", "party_id": None, "bank": "TLBANK",
                                                 "type": "internal"}]
    txns, alerts = [], []
    for i in range(n_customers):
        ids = []
        for j in range(per_customer):
            txn_id = secrets.token_hex(12)
            ids.append(txn_id)
            txns.append({"txn_id": txn_id, "ts": ts, "src_account": "CASH", "dst_account": f"A{i}",
                         "amount": 50000.0 + j, "currency": "CNY", "amount_cny": 50000.0 + j, "channel": "cash",
                         "purpose": secrets.token_hex(256)})
        alerts.append({"alert_id": f"a{i}", "detector": "pboc_lvtr_0501_cash", "subject_type": "party",
                       "subject_id": f"P{i}", "ts_start": ts, "ts_end": ts, "txn_ids": ids, "accounts": [f"A{i}"],
                       "report_kind": "large_value", "crcd": "0501", "reasons": []})
    from tianluo.report import alerts_frame

    return ReportData(alerts_frame(alerts), pl.DataFrame(txns, schema_overrides={"ts": pl.Datetime("us", "UTC")}),
                      pl.DataFrame(accounts), pl.DataFrame(parties))


def test_large_hvtr_is_split_into_zips_of_at_most_5_mb() -> None:
    data = _big_bank(n_customers=1500, per_customer=10)
    files = large_value_reports(INSTITUTION, data, report_date=REPORT_DATE)
    assert len(files) >= 2 and all(f.valid for f in files), [f.errors[:3] for f in files]
    assert [parse_file_name(f.file_name)["seq"] for f in files] == list(range(1, len(files) + 1))
    # Every customer is in exactly one file, and the counts of each file match its content.
    seen = [c.findtext("CBIF/CSNM") for f in files for c in root_of(f.content).iter("CATI")]
    assert sorted(seen) == sorted(f"P{i}" for i in range(1500))
    zips = package_zips(files, first_seq=1)
    assert len(zips) >= 2
    total = 0
    for z in zips:
        assert len(z.content) <= MAX_ZIP_BYTES and z.valid and z.format == "zip"
        assert z.file_name.startswith("NBHC1234567890123-20250103-") and z.file_name.endswith(".ZIP")
        with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
            members = zf.namelist()
            assert members == z.info["members"] and all(m.startswith("NBH") for m in members)
            total += len(members)
        assert validate_report(z.content).valid
    assert total == len(files)
    # One message type per ZIP.
    bstr_like = renumber(files[:1], 1)[0]
    bstr_like.file_name = bstr_like.file_name.replace("NBH", "NBS")
    with pytest.raises(ReportError, match="one message type"):
        package_zips([files[0], bstr_like], first_seq=1)


def test_zip_limit_is_exact_for_small_limits() -> None:
    files = large_value_reports(INSTITUTION, _big_bank(60, 3), max_zip_bytes=40_000)
    assert len(files) > 1
    zips = package_zips(files, first_seq=5, max_bytes=40_000)
    assert all(len(z.content) <= 40_000 for z in zips)
    assert parse_file_name(zips[0].file_name)["seq"] == 5
    with pytest.raises(ReportError, match="does not fit"):
        package_zips(files, first_seq=1, max_bytes=1_000)


# --- CLI -------------------------------------------------------------------------------------------------


def test_cli_writes_and_validates_reports(bank: Dataset, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    inst = ["--institution", str(DATA / "institution.toml")]
    r = runner.invoke(app, ["large-value", str(bank.root), "--date", "2025-01-02", "--out", str(out),
                            "--report-date", "2025-01-03", *inst])
    assert r.exit_code == 0, r.output
    assert (out / "NBHC1234567890123-20250103-00000001.ZIP").exists()
    r = runner.invoke(app, ["large-value", str(bank.root), "--date", "2025-01-02", "--out", str(out),
                            "--report-date", "2025-01-03", "--no-zip", *inst])
    assert r.exit_code == 0, r.output
    assert (out / "NBHC1234567890123-20250103-00000002.XML").exists()  # the day's next number
    alert = alerts_of(bank, "structuring_cash_near_threshold")[0]["alert_id"]
    r = runner.invoke(app, ["suspicious", str(bank.root), "--alert", alert, "--narrative", "拆分现金存款",
                            "--actions", "已上调风险等级", "--report-date", "2025-01-03", "--out", str(out), *inst])
    assert r.exit_code == 0, r.output
    assert (out / "NBSC1234567890123-20250103-00000002.ZIP").exists()  # ZIPs have their own numbers
    r = runner.invoke(app, ["goaml", str(bank.root), "--alert", alert, "--narrative", "拆分现金存款",
                            "--report-id", "CASE-9", "--out", str(out), *inst])
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert len(written) == 4 and any(n.startswith("goAML-CASE-9-") for n in written)
    r = runner.invoke(app, ["validate", *[str(out / n) for n in written]])
    assert r.exit_code == 0, r.output
    assert len(re.findall(r"^valid\s", r.output, flags=re.M)) == 4
    broken = tmp_path / "broken.xml"
    broken.write_bytes((out / "NBHC1234567890123-20250103-00000002.XML").read_bytes().replace(b"<CTTN>2", b"<CTTN>x"))
    r = runner.invoke(app, ["validate", str(broken)])
    assert r.exit_code == 1 and "INVALID" in r.output and "CTTN" in r.output
    r = runner.invoke(app, ["suspicious", str(bank.root), "--alert", "nope", "--narrative", "x", "--out",
                            str(out), *inst])
    assert r.exit_code == 2 and "nope" in r.output
    r = runner.invoke(app, ["large-value", str(bank.root), "--date", "2025-01-01", "--out", str(out), *inst])
    assert r.exit_code == 1 and "no large-value alerts" in r.output


def test_cli_reveals_from_the_vault_with_an_audit_entry(bank: Dataset, tmp_path: Path) -> None:
    """--vault reveals the report's tokens (one audited reveal per field) so the file holds real values."""
    import pyarrow as pa

    from tianluo.protect import Vault, load_keyring, verify_audit

    with open(DATA / "parties.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    vault_path = tmp_path / "vault" / "pii.sqlite"
    stored = {r["party_id"]: r for r in bank.read("parties").to_pylist()}
    with Vault(vault_path, load_keyring(create=True)) as vault:
        for field in PII_FIELDS:
            tokens = vault.put(field, pa.array([r[field] or None for r in rows], pa.string())).to_pylist()
            assert tokens == [stored[r["party_id"]][field] for r in rows]  # the dataset's own tokens
    alert = alerts_of(bank, "structuring_cash_near_threshold")[0]["alert_id"]
    out = tmp_path / "out"
    args = ["suspicious", str(bank.root), "--alert", alert, "--narrative", "拆分现金存款", "--no-zip",
            "--institution", str(DATA / "institution.toml"), "--out", str(out), "--vault", str(vault_path)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "--actor and --reason" in r.output  # no anonymous reveal
    r = CliRunner().invoke(app, [*args, "--actor", "investigator-7", "--reason", "STR CASE-0001"])
    assert r.exit_code == 0, r.output
    assert "revealed" in r.output and "pseudonymised" not in r.output
    [written] = list(out.glob("*.XML"))
    root = root_of(written.read_bytes())
    assert root.findtext("SEIFs/SEIF/SIIFs/SIIF/SENM") == "张三"
    assert root.findtext("SEIFs/SEIF/SIIFs/SIIF/SEID") == "110101199003071233"
    audit = [line for line in (vault_path.parent / "pii.sqlite.audit.jsonl").read_text().splitlines() if line]
    assert len(audit) >= 1 and all("investigator-7" in line and "STR CASE-0001" in line for line in audit)
    assert verify_audit(vault_path.parent / "pii.sqlite.audit.jsonl").entries == len(audit)
