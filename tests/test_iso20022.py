"""pacs.008: exact mapping of hand-written messages, broken input handling, and an XSD-valid round trip."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tianluo.ingest import SourceError, open_reader
from tianluo.ingest.base import Rejection
from tianluo.ingest.iso20022 import XSD_PATH, Pacs008Reader, validate_pacs008, write_pacs008
from tianluo.schema import TRANSACTIONS

DATA = Path(__file__).parent / "data" / "iso20022"
MULTI = DATA / "pacs008_multi.xml"
NS = "{urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08}"


def read(path: Path, **options: Any) -> tuple[dict[str, list[dict[str, Any]]], list[Rejection], Pacs008Reader]:
    """All records and rejections a reader yields, by table."""
    reader = Pacs008Reader(path, **options)
    rows: dict[str, list[dict[str, Any]]] = {"transactions": [], "parties": [], "accounts": []}
    rejected: list[Rejection] = []
    for batch in reader.batches():
        rows[batch.table] += batch.data.to_pylist()
        rejected += batch.rejected
    return rows, rejected, reader


def tx(file: Path, line: int, **values: str | None) -> dict[str, Any]:
    """An expected transactions record: the given columns, the rest null, channel wire."""
    row: dict[str, Any] = dict.fromkeys(("txn_id", "ts", "src_account", "dst_account", "amount", "currency",
                                         "cross_border", "src_bank", "dst_bank", "dst_amount", "dst_currency",
                                         "purpose"))
    row.update(values, channel="wire", _file=str(file), _line=line)
    return row


@cache
def official_schema() -> xmlschema.XMLSchema:
    """The vendored XSD through a second, independent implementation (not lxml/libxml2)."""
    return xmlschema.XMLSchema(str(XSD_PATH))


# ---------------------------------------------------------------------------- reading


MULTI_TX = [
    tx(MULTI, 21, txn_id="3f2b7c1e-8d4a-4b6e-9f10-2c3d4e5f6a7b", ts="2024-03-15T01:15:30.250000",
       src_account="SHCBCNSH:31001234567890", dst_account="HKTRHKHH110:012-345678-901", amount="250000.00",
       currency="USD", cross_border="true", src_bank="SHCBCNSHXXX", dst_bank="HKTRHKHH110",
       dst_amount="1800000.00", dst_currency="CNY", purpose="GDDS"),
    tx(MULTI, 98, txn_id="SHCB-TX-0002", ts="2024-03-15T02:30:00.000000", src_account="DE89370400440532013000",
       dst_account="FR1420041010050500013M02606", amount="12500.50", currency="EUR", cross_border="true",
       src_bank="BERLDEBBXXX", dst_bank="CRAGFRPP", purpose="Invoice 2024-118 consulting fees March"),
    tx(MULTI, 145, txn_id="SHCB20240315-000123/3", ts="2024-03-15T11:05:00.000000",
       src_account="102100099996:6222021234567890", dst_account="308584000013:6214830100012345",
       amount="48000.00", currency="CNY", cross_border="false", src_bank="102100099996", dst_bank="308584000013",
       purpose="Repayment of the personal loan agreed in January, second of six instalments, as set out in the "
               "written agreement of 2024-01-08; interest inc"),
    tx(MULTI, 199, txn_id="a7d9e0f1-2b3c-4d5e-8f60-718293a4b5c6", ts="2024-03-16T04:59:59.999999",
       src_account="SHCBCNSH:31001234567890", dst_account="NYTRUS33:987654321", amount="9800.00", currency="USD",
       cross_border="true", src_bank="SHCBCNSH", dst_bank="NYTRUS33XXX"),
]


def test_multi_transaction_message_maps_every_field() -> None:
    rows, rejected, reader = read(MULTI)
    assert rejected == []
    # UETR beats TxId; TxId beats EndToEndId; NOTPROVIDED is no id, so MsgId/position is used.
    # AccptncDtTm (+08:00, -05:00, no offset) beats CreDtTm; both become UTC. InstdAmt in
    # another currency is kept as dst_*, in the same currency dropped. Purp/Cd beats Ustrd,
    # which is joined and cut at 140. SHCBCNSHXXX and SHCBCNSH are one bank, so one account.
    assert rows["transactions"] == MULTI_TX
    f = str(MULTI)
    assert rows["parties"] == [
        {"party_id": "pty-9036855f03118847", "kind": "enterprise", "name": "上海星河贸易有限公司",
         "address": "浦东大道, 100, 200120, 上海, CN", "region": "CN", "_file": f, "_line": 34},
        {"party_id": "pty-9078f128f48755cd", "kind": "enterprise", "name": "Harbour Light Trading Limited",
         "address": "Unit 1203, 12/F, Ocean Centre, 5 Canton Road, Tsim Sha Tsui, Kowloon, HK", "region": "HK",
         "_file": f, "_line": 71},
        {"party_id": "pty-30c6397d53f92783", "kind": "person", "name": "Hans Müller", "address": "Berlin, DE",
         "region": "DE", "_file": f, "_line": 107},
        {"party_id": "pty-7de832f777f801c8", "kind": "person", "name": "Camille Dubois", "address": "Lyon, FR",
         "region": "FR", "_file": f, "_line": 129},
        {"party_id": "pty-df578f6e3f2ad9eb", "kind": "person", "name": "张伟", "address": "北京市朝阳区建国路88号, CN",
         "region": "CN", "_file": f, "_line": 152},
        {"party_id": "pty-fb9db9b929fbf7dc", "kind": "person", "name": "李娜", "address": None, "region": "CN",
         "_file": f, "_line": 183},
        {"party_id": "pty-127617bf507910d3", "kind": "person", "name": "Meridian Components Inc.",
         "address": "New York, US", "region": "US", "_file": f, "_line": 227},
    ]
    owners = {p["party_id"] for p in rows["parties"]}
    assert [(a["account_id"], a["bank"], a["_line"]) for a in rows["accounts"]] == [
        ("SHCBCNSH:31001234567890", "SHCBCNSHXXX", 54), ("HKTRHKHH110:012-345678-901", "HKTRHKHH110", 84),
        ("DE89370400440532013000", "BERLDEBBXXX", 114), ("FR1420041010050500013M02606", "CRAGFRPP", 136),
        ("102100099996:6222021234567890", "102100099996", 159),
        ("308584000013:6214830100012345", "308584000013", 187), ("NYTRUS33:987654321", "NYTRUS33XXX", 234),
    ]
    assert {a["party_id"] for a in rows["accounts"]} == owners
    assert reader.notes() == {"messages": 1, "ts_sources": {"AccptncDtTm": 3, "GrpHdr/CreDtTm": 1},
                              "timestamps_without_offset": 1, "local_tz": "UTC", "nb_of_txs_mismatches": []}


def test_fixture_is_valid_against_the_official_xsd() -> None:
    assert validate_pacs008(MULTI) == []
    assert official_schema().is_valid(str(MULTI))


def test_records_pass_the_shared_validator() -> None:
    """Every string the reader emits parses under the canonical rules (ts format, bools, kinds)."""
    from tianluo.ingest.validate import validate
    from tianluo.protect import Tokenizer
    from tianluo.reference.currency import FxTable

    fx, tokenizer = FxTable.load(), Tokenizer(bytes(32))
    loaded: dict[str, pa.Table] = {}
    for batch in Pacs008Reader(MULTI).batches():
        v = validate(batch, ingest_id="t", fx=fx, tokenizer=tokenizer)
        assert v.quarantined.num_rows == 0, v.quarantined.to_pylist()
        loaded[batch.table] = v.loaded
    t = loaded["transactions"]
    assert t.column("ts").to_pylist() == [
        datetime(2024, 3, 15, 1, 15, 30, 250000, tzinfo=UTC), datetime(2024, 3, 15, 2, 30, tzinfo=UTC),
        datetime(2024, 3, 15, 11, 5, tzinfo=UTC), datetime(2024, 3, 16, 4, 59, 59, 999999, tzinfo=UTC)]
    assert t.column("cross_border").to_pylist() == [True, True, False, True]
    assert t.column("dst_amount").to_pylist() == [1800000.0, None, None, None]
    assert (loaded["parties"].num_rows, loaded["accounts"].num_rows) == (7, 7)


def test_local_tz_applies_only_to_timestamps_without_offset() -> None:
    rows, _, reader = read(MULTI, local_tz="Asia/Shanghai")
    assert [r["ts"] for r in rows["transactions"]] == [
        "2024-03-15T01:15:30.250000", "2024-03-15T02:30:00.000000", "2024-03-15T03:05:00.000000",
        "2024-03-16T04:59:59.999999"]
    assert reader.notes()["timestamps_without_offset"] == 1


def test_message_wrapped_with_its_business_application_header() -> None:
    bah = DATA / "pacs008_bah.xml"
    rows, rejected, _ = read(bah)
    assert rejected == []
    assert rows["transactions"] == [
        tx(bah, 36, txn_id="e1c9a8b7-6d5f-4e3a-a2b1-0c9d8e7f6a5b", ts="2024-04-02T07:59:58.000000",
           src_account="GB29NWBK60161331926819", dst_account="SGPBSGSG:0012345678", amount="15750.00",
           currency="GBP", cross_border="true", src_bank="NWTRGB2LXXX", dst_bank="SGPBSGSGXXX", purpose="SUPP"),
        tx(bah, 85, txn_id="INV-88214", ts="2024-04-02T08:00:05.000000", src_account="GB29NWBK60161331926819",
           dst_account="NWTRGB2L:40-11-22 55667788", amount="980.10", currency="GBP", cross_border="false",
           src_bank="NWTRGB2LXXX", dst_bank="NWTRGB2LXXX"),
    ]
    assert [(p["name"], p["_line"]) for p in rows["parties"]] == [
        ("Albion Marine Supplies Ltd", 46), ("Straits Chandlery Pte Ltd", 68), ("Thames Rigging Co", 109)]
    assert [a["account_id"] for a in rows["accounts"]] == [
        "GB29NWBK60161331926819", "SGPBSGSG:0012345678", "NWTRGB2L:40-11-22 55667788"]


def test_truncated_file_keeps_what_came_before_and_rejects_the_rest() -> None:
    path = DATA / "pacs008_truncated.xml"
    rows, rejected, reader = read(path)
    assert [r["txn_id"] for r in rows["transactions"]] == ["3f2b7c1e-8d4a-4b6e-9f10-2c3d4e5f6a7b", "SHCB-TX-0002"]
    assert rows["transactions"][1] == {**MULTI_TX[1], "_file": str(path)}
    assert rejected == [Rejection(
        "transactions", str(path), 171, None,
        "XML is not well-formed: Premature end of data in tag ClrSysId line 169, line 171, column 1; "
        "the rest of the file (from line 145) was not read", "")]
    assert reader.notes()["nb_of_txs_mismatches"] == [
        f"{path}:7: MsgId SHCB20240315-000123 declares NbOfTxs=4 but holds 2 CdtTrfTxInf"]


def test_transactions_missing_required_pieces_are_rejected_with_the_xml_path() -> None:
    path = DATA / "pacs008_missing_fields.xml"
    rows, rejected, _ = read(path)
    assert [r["txn_id"] for r in rows["transactions"]] == ["BERL-7-1", "BERL-7-4"]
    assert [(r.table, r.file, r.line, r.field, r.reason) for r in rejected] == [
        ("transactions", str(path), 54, "amount",
         "CdtTrfTxInf/IntrBkSttlmAmt is missing or empty: the interbank settlement amount is required"),
        ("transactions", str(path), 93, "src_account",
         "CdtTrfTxInf/DbtrAcct/Id has no IBAN or Othr/Id: the debtor account is missing; "
         "CdtTrfTxInf/IntrBkSttlmAmt has no Ccy attribute"),
    ]
    amount_missing = rejected[0].raw
    assert amount_missing.startswith("<CdtTrfTxInf") and "<TxId>BERL-7-2</TxId>" in amount_missing
    # The quarantine stores raw text as is, so personal data is withheld from it here.
    assert "Jonas" not in amount_missing and "Oranienstraße" not in amount_missing and "Léa" not in amount_missing
    assert "<!-- Nm withheld: personal data -->" in amount_missing
    # Nothing of a rejected transaction is loaded, not even its parties.
    assert [p["name"] for p in rows["parties"]] == ["Jonas Weber", "Hausverwaltung Spree GmbH"]


def test_raw_of_a_rejection_is_at_most_2_kb(tmp_path: Path) -> None:
    text = (DATA / "pacs008_missing_fields.xml").read_text(encoding="utf-8")
    long = text.replace("<ChrgBr>SLEV</ChrgBr>\n      <Dbtr>\n        <Nm>Jonas Weber</Nm>\n        <PstlAdr>",
                        "<ChrgBr>SLEV</ChrgBr>" + "<ChrgsInf/>" * 400 + "<Dbtr><Nm>Jonas Weber</Nm><PstlAdr>", 1)
    (tmp_path / "long.xml").write_text(long, encoding="utf-8")
    _, rejected, _ = read(tmp_path / "long.xml")
    assert len(rejected[0].raw) == 2048


@pytest.mark.parametrize(("content", "message"), [
    ((DATA / "camt053_statement.xml").read_text(), "namespace urn:iso:std:iso:20022:tech:xsd:camt.053.001.08, "
                                                   "which is not pacs.008"),
    ('<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.14"/>',
     "pacs.008.001.14 is not supported; versions 02 to 13 are read"),
    ("<html><body>not a payment</body></html>", "no ISO 20022 Document element near the top (the root element "
                                                "is html)"),
    ("PK\x03\x04 zip bytes", "not well-formed XML before any pacs.008 Document: Start tag expected, '<' not "
                            "found, line 1, column 1"),
    ("", "the file is empty; a pacs.008 message was expected"),
])
def test_a_file_that_is_not_pacs008_raises(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "in.xml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SourceError, match=r"in\.xml: ") as err:
        next(Pacs008Reader(path).batches())
    assert message in str(err.value)


def test_a_folder_fails_as_a_whole_before_the_first_batch(tmp_path: Path) -> None:
    shutil.copy(MULTI, tmp_path / "a.xml")
    shutil.copy(DATA / "camt053_statement.xml", tmp_path / "b.xml")
    reader = open_reader(tmp_path)
    assert isinstance(reader, Pacs008Reader) and reader.files() == [tmp_path / "a.xml", tmp_path / "b.xml"]
    with pytest.raises(SourceError, match=r"b\.xml: the Document"):
        next(reader.batches())


def test_a_folder_is_read_file_by_file_in_small_batches(tmp_path: Path) -> None:
    shutil.copy(MULTI, tmp_path / "a.xml")
    shutil.copy(DATA / "pacs008_bah.xml", tmp_path / "b.XML")
    (tmp_path / "notes.txt").write_text("not a message")
    reader = Pacs008Reader(tmp_path, batch_rows=3)
    batches = list(reader.batches())
    tx_batches = [b for b in batches if b.table == "transactions"]
    assert [b.data.num_rows for b in tx_batches] == [3, 1, 2]
    # The pipeline takes a batch's file from its first row: a batch never mixes files.
    assert all(len(set(b.data.column("_file").to_pylist())) == 1 for b in batches)
    assert reader.notes()["messages"] == 2


def test_ingest_a_folder_of_messages_end_to_end(tmp_path: Path) -> None:
    from tianluo.ingest import ingest
    from tianluo.store import Dataset

    src = tmp_path / "in"
    src.mkdir()
    for name in ("pacs008_multi", "pacs008_missing_fields", "pacs008_truncated", "pacs008_bah"):
        shutil.copy(DATA / f"{name}.xml", src)
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(src), ds)
    # 4 + 4 + 3 + 2 records read: every one loaded or quarantined. The truncated file is an
    # earlier copy of the multi message, so its two complete transactions are duplicates.
    assert res.loaded == {"transactions": 8, "parties": 11, "accounts": 11}
    assert res.quarantined == {"transactions": 5}
    assert sorted((Path(r["file"]).name, r["source_line"], r["field"]) for r in ds.read("quarantine").to_pylist()) == [
        ("pacs008_missing_fields.xml", 54, "amount"), ("pacs008_missing_fields.xml", 93, "src_account"),
        ("pacs008_truncated.xml", 21, "txn_id"), ("pacs008_truncated.xml", 98, "txn_id"),
        ("pacs008_truncated.xml", 171, None)]
    loaded = ds.read("transactions")
    assert sorted(loaded.column("txn_id").to_pylist()) == sorted(
        [r["txn_id"] for r in MULTI_TX] + ["BERL-7-1", "BERL-7-4", "INV-88214", "e1c9a8b7-6d5f-4e3a-a2b1-0c9d8e7f6a5b"])
    assert set(loaded.column("channel").to_pylist()) == {"wire"}
    parties = ds.read("parties")
    assert all(n.startswith("tk1.") for n in parties.column("name").to_pylist())  # tokenized at ingest
    assert res.report["notes"]["messages"] == 4
    assert ingest(open_reader(src), ds).skipped  # the same files again: a no-op


def test_validate_schema_refuses_an_invalid_or_unvalidatable_message() -> None:
    with pytest.raises(SourceError) as err:
        Pacs008Reader(DATA / "pacs008_missing_fields.xml", validate_schema=True).batches().__next__()
    assert "not a valid pacs.008.001.08 message (2 schema errors)" in str(err.value)
    assert "pacs008_missing_fields.xml:59: Element '{urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08}ChrgBr': " \
           "This element is not expected." in str(err.value)
    with pytest.raises(SourceError, match=r"only pacs\.008\.001\.08 can be validated"):
        next(Pacs008Reader(DATA / "pacs008_bah.xml", validate_schema=True).batches())
    rows, _, _ = read(MULTI, validate_schema=True)
    assert len(rows["transactions"]) == 4


def test_external_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-KEY")
    text = MULTI.read_text(encoding="utf-8").replace(
        "<Document ", f'<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file://{secret}">]>\n<Document ', 1)
    text = text.replace("Invoice 2024-118 consulting fees March", "&xxe;", 1)
    (tmp_path / "xxe.xml").write_text(text, encoding="utf-8")
    rows, rejected, _ = read(tmp_path / "xxe.xml")
    assert rejected == [] and len(rows["transactions"]) == 4
    assert "TOP-SECRET" not in repr(rows)
    assert rows["transactions"][1]["purpose"] is None


# ---------------------------------------------------------------------------- writing


def canonical(rows: list[dict[str, Any]]) -> pa.Table:
    """Canonical transaction rows (the columns the writer reads), typed as the schema says."""
    cols = ("txn_id", "ts", "src_account", "dst_account", "amount", "currency", "channel", "src_bank", "dst_bank",
            "dst_amount", "dst_currency", "purpose")
    schema = pa.schema([TRANSACTIONS.arrow.field(c) for c in cols])
    return pa.Table.from_pylist([{**dict.fromkeys(cols), "channel": "wire", **r} for r in rows], schema=schema)


def read_back(paths: list[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in paths:
        assert official_schema().is_valid(str(p)), list(official_schema().iter_errors(str(p)))[:1]
        rows, rejected, _ = read(p)
        assert rejected == []
        out += rows["transactions"]
    return out


def as_canonical(r: dict[str, Any]) -> dict[str, Any]:
    """A read-back record in the canonical types, for comparison with what was written."""
    return {"txn_id": r["txn_id"],
            "ts": datetime.strptime(r["ts"], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC),
            "src_account": r["src_account"], "dst_account": r["dst_account"],
            "amount": float(r["amount"]), "currency": r["currency"],
            "dst_amount": None if r["dst_amount"] is None else float(r["dst_amount"]),
            "dst_currency": r["dst_currency"], "src_bank": r["src_bank"], "dst_bank": r["dst_bank"],
            "purpose": r["purpose"]}


ROUND_TRIP = [
    {"txn_id": "3f2b7c1e-8d4a-4b6e-9f10-2c3d4e5f6a7b", "ts": datetime(2024, 3, 15, 1, 15, 30, 250000, tzinfo=UTC),
     "src_account": "SHCBCNSH:31001234567890", "dst_account": "HKTRHKHH110:012-345678-901", "amount": 250000.0,
     "currency": "USD", "src_bank": "SHCBCNSHXXX", "dst_bank": "HKTRHKHH110", "dst_amount": 1800000.0,
     "dst_currency": "CNY", "purpose": "GDDS"},
    {"txn_id": "SHCB-TX-0002", "ts": datetime(2024, 3, 15, 2, 30, tzinfo=UTC),
     "src_account": "DE89370400440532013000", "dst_account": "FR1420041010050500013M02606", "amount": 12500.5,
     "currency": "EUR", "src_bank": "BERLDEBBXXX", "dst_bank": "CRAGFRPP",
     "purpose": "Invoice 2024-118 consulting fees March"},
    {"txn_id": "SHCB20240315-000123/3", "ts": datetime(2024, 3, 15, 11, 5, tzinfo=UTC),
     "src_account": "102100099996:6222021234567890", "dst_account": "308584000013:6214830100012345",
     "amount": 48000.0, "currency": "CNY", "src_bank": "102100099996", "dst_bank": "308584000013"},
    {"txn_id": "JP-1", "ts": datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "src_account": "ACC-1",
     "dst_account": "ACC-2", "amount": 1500000.0, "currency": "JPY", "dst_amount": 3025.125, "dst_currency": "KWD"},
]


def test_round_trip_of_a_canonical_table(tmp_path: Path) -> None:
    paths = write_pacs008(canonical(ROUND_TRIP), tmp_path / "out.xml", msg_id="TL-20240316-1",
                          created=datetime(2024, 3, 16, 8, tzinfo=UTC))
    assert paths == [tmp_path / "out.xml"]
    assert validate_pacs008(paths[0]) == []
    expected = [{**dict.fromkeys(("dst_amount", "dst_currency", "src_bank", "dst_bank", "purpose")), **r}
                for r in ROUND_TRIP]
    assert [as_canonical(r) for r in read_back(paths)] == expected
    doc = etree.parse(str(paths[0]))
    hdr = {e.tag.removeprefix(NS): e.text.strip() or None for e in doc.find(f"{NS}FIToFICstmrCdtTrf/{NS}GrpHdr")}
    # Mixed currencies: a CtrlSum across them, but no TtlIntrBkSttlmAmt (it has one currency).
    assert hdr == {"MsgId": "TL-20240316-1", "CreDtTm": "2024-03-16T08:00:00.000000Z", "NbOfTxs": "4",
                   "CtrlSum": "1810500.50", "SttlmInf": None}
    assert doc.find(f".//{NS}SttlmMtd").text == "CLRG"
    # JPY has no decimals, KWD three: amounts are written with the currency's minor units.
    assert [e.text for e in doc.iter(f"{NS}IntrBkSttlmAmt")] == ["250000.00", "12500.50", "48000.00", "1500000"]
    assert [e.text for e in doc.iter(f"{NS}InstdAmt")] == ["1800000.00", "3025.125"]
    # Non-IBAN accounts lose the bank prefix the reader will add back; BIC-like banks are BICFI.
    assert [e.text for e in doc.iter(f"{NS}Id") if e.text and e.text.strip()] == [
        "31001234567890", "012-345678-901", "6222021234567890", "6214830100012345", "ACC-1", "ACC-2"]
    assert [e.text for e in doc.iter(f"{NS}MmbId")] == ["102100099996", "308584000013"]


def test_writer_splits_into_messages_with_correct_totals(tmp_path: Path) -> None:
    rows = [{"txn_id": f"T{i}", "ts": datetime(2024, 5, 1, i, tzinfo=UTC), "src_account": "A",
             "dst_account": "B", "amount": amount, "currency": ccy}
            for i, (amount, ccy) in enumerate([(0.125, "USD"), (10.0, "USD"), (1.1, "USD"), (2.0, "EUR"),
                                               (3.5, "EUR")])]
    paths = write_pacs008(canonical(rows), tmp_path / "batch.xml", msg_id="TL-7",
                          created=datetime(2024, 5, 2, tzinfo=UTC), max_tx_per_msg=2)
    assert paths == [tmp_path / "batch-1.xml", tmp_path / "batch-2.xml", tmp_path / "batch-3.xml"]
    headers = []
    for p in paths:
        hdr = etree.parse(str(p)).find(f"{NS}FIToFICstmrCdtTrf/{NS}GrpHdr")
        total = hdr.find(f"{NS}TtlIntrBkSttlmAmt")
        headers.append((hdr.findtext(f"{NS}MsgId"), hdr.findtext(f"{NS}NbOfTxs"), hdr.findtext(f"{NS}CtrlSum"),
                        None if total is None else (total.text, total.get("Ccy"))))
    # 0.125 USD rounds half up to 0.13; a message mixing USD and EUR has no single-currency total.
    assert headers == [("TL-7-1", "2", "10.13", ("10.13", "USD")), ("TL-7-2", "2", "3.10", None),
                       ("TL-7-3", "1", "3.50", ("3.50", "EUR"))]
    assert [r["txn_id"] for r in read_back(paths)] == ["T0", "T1", "T2", "T3", "T4"]


GOOD = {"txn_id": "T1", "ts": datetime(2024, 5, 1, tzinfo=UTC), "src_account": "A", "dst_account": "B",
        "amount": 10.0, "currency": "USD"}


@pytest.mark.parametrize(("change", "options", "message"), [
    ({"txn_id": "x" * 40}, {}, "row 0 (txn_id 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'): txn_id "),
    ({"currency": "USDT"}, {}, "row 0 (txn_id 'T1'): USDT is a virtual asset"),
    ({"currency": "ZZZ"}, {}, "currency 'ZZZ' is not an ISO 4217 code Tianluo knows"),
    ({"currency": "JPY", "amount": 0.1}, {}, "amount 0.1 JPY rounds to 0 at the currency's 0 decimal places"),
    ({"amount": -5.0}, {}, "amount -5.0 is not a positive finite number"),
    ({"src_account": "9" * 35}, {}, "longer than the 34 characters of DbtrAcct/Id/Othr/Id"),
    ({"dst_account": None}, {}, "row 0 (txn_id 'T1'): dst_account is null"),
    ({"dst_bank": "X" * 36}, {}, "out.xml: the message would not be valid pacs.008.001.08: row 0 (txn_id 'T1'): "
                                 "Element '{urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08}MmbId': [facet "
                                 "'maxLength'] The value has a length of '36'"),
    ({}, {"version": "09"}, "version '09' is not supported"),
    ({}, {"msg_id": "M" * 36}, "is too long: a MsgId"),
])
def test_writer_refuses_what_pacs008_cannot_carry(tmp_path: Path, change: dict[str, Any],
                                                   options: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"msg_id": "TL-1", "created": datetime(2024, 5, 2, tzinfo=UTC), **options}
    with pytest.raises(ValueError) as err:
        write_pacs008(canonical([{**GOOD, **change}]), tmp_path / "out.xml", **kwargs)
    assert message in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_writer_refuses_an_empty_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no transactions to write"):
        write_pacs008(canonical([]), tmp_path / "out.xml", msg_id="TL-1", created=datetime(2024, 5, 2, tzinfo=UTC))


# ---------------------------------------------------------------------------- property

MINOR_UNITS = {"USD": 2, "EUR": 2, "CNY": 2, "HKD": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3}


def iban(country: str, bban: str) -> str:
    """An IBAN with correct ISO 13616 check digits."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


banks = st.one_of(
    st.from_regex(r"[A-Z]{6}[A-Z0-9]{2}", fullmatch=True),  # BIC8
    st.from_regex(r"[A-Z]{6}[A-Z0-9]{2}(XXX|[0-9]{3})", fullmatch=True),  # BIC11, head office or branch
    st.from_regex(r"[0-9]{6,12}", fullmatch=True),  # clearing-system member id (CNAPS, ABA…)
)


@st.composite
def sides(draw: st.DrawFn) -> tuple[str, str]:
    """(bank, account id as the reader forms it)."""
    bank = draw(banks)
    if draw(st.booleans()):
        return bank, iban(draw(st.sampled_from(["DE", "FR", "GB", "CN"])),
                          draw(st.from_regex(r"[0-9A-Z]{10,26}", fullmatch=True)))
    key = bank[:8] if len(bank) == 11 and bank.endswith("XXX") else bank
    return bank, f"{key}:{draw(st.from_regex(r'[0-9][0-9 -]{0,20}[0-9]', fullmatch=True))}"


def money(draw: st.DrawFn) -> tuple[float, str]:
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    return draw(st.integers(1, 10**12)) / 10 ** MINOR_UNITS[currency], currency


@st.composite
def rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.one_of(st.uuids(version=4).map(str),
                                  st.from_regex(r"[A-Za-z0-9][A-Za-z0-9/.-]{0,34}", fullmatch=True)),
                        min_size=1, max_size=6, unique=True))
    out = []
    for txn_id in ids:
        (src_bank, src), (dst_bank, dst) = draw(sides()), draw(sides())
        amount, currency = money(draw)
        dst_amount, dst_currency = money(draw) if draw(st.booleans()) else (None, None)
        if dst_currency == currency:
            dst_amount = dst_currency = None  # same currency: not an FX amount, not written
        out.append({
            "txn_id": txn_id, "src_account": src, "dst_account": dst, "src_bank": src_bank, "dst_bank": dst_bank,
            "ts": draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC))),
            "amount": amount, "currency": currency, "dst_amount": dst_amount, "dst_currency": dst_currency,
            "purpose": draw(st.one_of(st.none(), st.from_regex(r"[A-Z]{4}", fullmatch=True),
                                      st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ,.-]{0,60}[a-z]", fullmatch=True))),
        })
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(written=rows(), per_msg=st.one_of(st.none(), st.integers(1, 4)))
def test_round_trip_property(tmp_path: Path, written: list[dict[str, Any]], per_msg: int | None) -> None:
    for old in tmp_path.glob("p*.xml"):
        old.unlink()
    paths = write_pacs008(canonical(written), tmp_path / "p.xml", msg_id="PROP", max_tx_per_msg=per_msg,
                          created=datetime(2024, 1, 1, tzinfo=UTC))
    got = [as_canonical(r) for r in read_back(paths)]
    assert got == written
    # Amounts are exact in decimal: what the file says is the minor-unit amount that was generated.
    for r, w in zip(got, written, strict=True):
        assert Decimal(repr(r["amount"])) == Decimal(repr(w["amount"]))


def test_a_schema_error_names_the_row_it_comes_from(tmp_path: Path) -> None:
    rows = [{**GOOD, "txn_id": f"T{i}"} for i in range(5)]
    rows[3]["src_bank"] = "Bank of a name far longer than thirty-five"
    with pytest.raises(ValueError, match=r"batch-2.xml: .*: row 3 \(txn_id 'T3'\): Element '\{[^}]+\}MmbId'"):
        write_pacs008(canonical(rows), tmp_path / "batch.xml", msg_id="TL-1", max_tx_per_msg=2,
                      created=datetime(2024, 5, 2, tzinfo=UTC))
    # All or nothing: the valid first message is not left behind as a partial export either.
    assert list(tmp_path.iterdir()) == []
