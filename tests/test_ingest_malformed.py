"""Malformed input: a clear error or a quarantined row, and nothing lost or half-written."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tianluo.ingest import SourceError, ingest, open_reader
from tianluo.store import Dataset

MAPPING = """
[source]
ts_format = "%Y-%m-%d %H:%M:%S"
timezone = "Asia/Shanghai"
[columns]
txn_id = "id"
ts = "when"
src_account = "from"
dst_account = "to"
amount = "amount"
currency = "ccy"
[defaults]
channel = "transfer"
"""
HEADER = "id,when,from,to,amount,ccy"


def _mapped(tmp_path: Path, body: str | bytes, name: str = "t.csv") -> tuple[Path, Path]:
    f = tmp_path / name
    if isinstance(body, str):
        body = body.encode()
    f.write_bytes(body)
    m = tmp_path / "map.toml"
    m.write_text(MAPPING)
    return f, m


def _quarantine(ds: Dataset) -> list[tuple[int, str | None, str]]:
    q = ds.read("quarantine")
    return sorted(
        zip(
            q.column("source_line").to_pylist(),
            q.column("field").to_pylist(),
            q.column("reason").to_pylist(),
            strict=True,
        )
    )


def test_bad_values_are_quarantined_with_line_field_reason(tmp_path: Path) -> None:
    f, m = _mapped(
        tmp_path,
        "\n".join(
            [
                HEADER,
                "t1,2024-03-01 09:00:00,A,B,100.00,CNY",  # 2 ok
                "t2,2024-03-01 25:00:00,A,B,100.00,CNY",  # 3 bad hour
                "t3,2024-03-01 09:00:00,A,B,abc,CNY",  # 4 not a number
                "t4,2024-03-01 09:00:00,A,B,0,CNY",  # 5 zero
                "t5,2024-03-01 09:00:00,A,B,5,XYZ",  # 6 unknown currency
                "t6,2024-03-01 09:00:00,,B,5,CNY",  # 7 missing payer
                "t7,2024-03-01 09:00:00,A,A,5,US Dollar",  # 8 ok, self-transfer, named currency
                "t1,2024-03-02 09:00:00,A,B,7,CNY",  # 9 duplicate id
                "t9,2024-03-01 09:00:00,A,B,5",  # 10 truncated row
                "",  # 11 blank: not a record
                "t10,2024-03-01 09:00:00,A,B,5,CNY,extra",  # 12 stray field
            ]
        )
        + "\n",
    )
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(f, mapping=m), ds)
    assert res.loaded == {"transactions": 2}
    assert res.quarantined == {"transactions": 8}
    q = _quarantine(ds)
    assert [(line, field) for line, field, _ in q] == [
        (3, "ts"),
        (4, "amount"),
        (5, "amount"),
        (6, "currency"),
        (7, "src_account"),
        (9, "txn_id"),
        (10, None),
        (12, None),
    ]
    reasons = {line: reason for line, _, reason in q}
    assert reasons[3] == "timestamp '2024-03-01 25:00:00' does not match the format '%Y-%m-%d %H:%M:%S'"
    assert reasons[4] == "'abc' is not a number"
    assert reasons[6] == "unknown currency 'XYZ'; use an ISO 4217 code or a known name"
    assert reasons[9] == "txn_id 't1' repeats line 2 of this ingest"
    assert reasons[10] == "row has 5 of 6 fields (truncated line or missing delimiter)"
    con = ds.connect()
    rows = con.execute("SELECT txn_id, ts::VARCHAR, currency, self_transfer FROM transactions ORDER BY 1").fetchall()
    # Asia/Shanghai 09:00 is 01:00 UTC.
    assert rows == [("t1", "2024-03-01 01:00:00+00", "CNY", False), ("t7", "2024-03-01 01:00:00+00", "USD", True)]


def test_truncated_file_last_line(tmp_path: Path) -> None:
    text = HEADER + "\n" + "".join(f"t{i},2024-03-01 09:00:00,A,B,{i + 1}.00,CNY\n" for i in range(50))
    f, m = _mapped(tmp_path, text[:-12])  # cut inside the last row, no final newline
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(f, mapping=m), ds)
    assert res.loaded["transactions"] == 49
    assert [(line, reason.split(" (")[0]) for line, _, reason in _quarantine(ds)] == [(51, "row has 4 of 6 fields")]


def test_truncated_gzip_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    text = HEADER + "\n" + "".join(f"t{i},2024-03-01 09:00:00,A,B,{i + 1}.00,CNY\n" for i in range(20000))
    blob = gzip.compress(text.encode())
    f, m = _mapped(tmp_path, blob[: len(blob) // 2], name="t.csv.gz")
    ds = Dataset(tmp_path / "ds", create=True)
    with pytest.raises(SourceError, match="damaged or truncated"):
        ingest(
            open_reader(
                f,
                mapping=m,
            ),
            ds,
        )
    assert Dataset(tmp_path / "ds").ingests == []
    assert not list((tmp_path / "ds").rglob("*.parquet"))


def test_wrong_encoding_is_quarantined_per_line_with_a_hint(tmp_path: Path) -> None:
    body = (
        HEADER + "\n" + "t1,2024-03-01 09:00:00,A,B,1.00,CNY\n" + "t2,2024-03-01 09:00:00,张三,B,2.00,人民币\n"
    ).encode("gb18030")
    f, m = _mapped(tmp_path, body)
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(f, mapping=m), ds)
    assert res.loaded == {"transactions": 1} and res.quarantined == {"transactions": 1}
    ((line, field, reason),) = _quarantine(ds)
    assert line == 3 and field is None
    assert "not valid utf-8" in reason and "--encoding gb18030" in reason
    # The same file read with the right encoding loads both rows, 人民币 → CNY.
    ds2 = Dataset(tmp_path / "ds2", create=True)
    res = ingest(open_reader(f, mapping=m, encoding="gb18030"), ds2)
    assert res.loaded == {"transactions": 2}
    assert ds2.connect().execute("SELECT DISTINCT currency FROM transactions").fetchall() == [("CNY",)]


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    f, m = _mapped(tmp_path, "id,when,from,to,ccy\nt1,2024-03-01 09:00:00,A,B,CNY\n")
    ds = Dataset(tmp_path / "ds", create=True)
    with pytest.raises(SourceError, match=r"missing column\(s\) 'amount'"):
        ingest(open_reader(f, mapping=m), ds)
    assert Dataset(tmp_path / "ds").ingests == []


def test_amlworld_wrong_header_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "X_Trans.csv"
    f.write_text("Timestamp,From Bank,Account,To Bank,Amount Paid\n2022/09/01 00:20,1,A,2,5\n")
    with pytest.raises(SourceError, match="not an AMLworld transactions header"):
        ingest(open_reader(f, "amlworld"), Dataset(tmp_path / "ds", create=True))


def test_quoted_fields_keep_line_numbers(tmp_path: Path) -> None:
    f, m = _mapped(
        tmp_path,
        "\n".join(
            [
                HEADER,
                't1,2024-03-01 09:00:00,"A, Ltd",B,"1,200.50",CNY',
                't2,2024-03-01 09:00:00,"multi',
                'line",B,3,CNY',
                "t3,2024-03-01 09:00:00,A,B,-1,CNY",
            ]
        )
        + "\n",
    )
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(f, mapping=m), ds)
    assert res.loaded == {"transactions": 2}
    assert [(line, field) for line, field, _ in _quarantine(ds)] == [(5, "amount")]
    amt = ds.connect().execute("SELECT amount FROM transactions WHERE txn_id = 't1'").fetchall()
    assert amt == [(1200.5,)]


def test_crash_mid_commit_leaves_dataset_as_before(tmp_path: Path) -> None:
    ds_dir = tmp_path / "ds"
    first, m = _mapped(
        tmp_path,
        HEADER + "\n" + "".join(f"a{i},2024-03-0{1 + i % 5} 09:00:00,A,B,{i + 1}.00,CNY\n" for i in range(100)),
        name="first.csv",
    )
    ingest(open_reader(first, mapping=m), Dataset(ds_dir, create=True))
    second, _ = _mapped(
        tmp_path,
        HEADER + "\n" + "".join(f"b{i},2024-04-0{1 + i % 9} 09:00:00,A,B,{i + 1}.00,CNY\n" for i in range(100)),
        name="second.csv",
    )
    for fault in ("after-stage", "mid-commit", "before-manifest"):
        proc = subprocess.run(
            [sys.executable, "-m", "tianluo.cli", "ingest", str(second), "-d", str(ds_dir), "--mapping", str(m)],
            env={**os.environ, "TIANLUO_FAULT": fault},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 70, proc.stderr
        ds = Dataset(ds_dir)
        assert len(ds.ingests) == 1
        assert ds.count("transactions") == 100
        assert {r[0][0] for r in ds.connect().execute("SELECT txn_id FROM transactions").fetchall()} == {"a"}
    # The next write cleans up what the crash left and succeeds.
    res = ingest(open_reader(second, mapping=m), Dataset(ds_dir))
    assert res.loaded == {"transactions": 100}
    ds = Dataset(ds_dir)
    assert ds.count("transactions") == 200
    listed = {p.resolve() for p in ds.files("transactions")}
    assert {p.resolve() for p in (ds_dir / "transactions").rglob("*.parquet")} == listed
    assert not (ds_dir / ".staging").exists()


# -- property: every row is loaded or quarantined, never both, never neither ------------

_cell = st.text(alphabet="abcAB019.-: ,\"'中", max_size=8)
_good_amount = st.decimals(min_value="0.01", max_value="99999999", places=2).map(str)
_row = st.tuples(
    st.one_of(st.just("id"), _cell),  # id (mostly reused → duplicates)
    st.one_of(st.just("2024-05-01 12:00:00"), _cell),
    st.one_of(st.just("A"), _cell),
    st.one_of(st.just("B"), _cell),
    st.one_of(_good_amount, _cell),
    st.one_of(st.sampled_from(["CNY", "USD", "Yuan", "eur"]), _cell),
    st.integers(min_value=-1, max_value=1),  # field-count change
)


def _csv_cell(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n') else v


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=25), ids=st.booleans())
def test_every_row_loaded_or_quarantined(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple], ids: bool
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    lines = [HEADER]
    for i, r in enumerate(rows):
        cells = [_csv_cell(c) for c in r[:6]]
        if ids:
            cells[0] = _csv_cell(f"{r[0]}{i % 3}")
        if r[6] < 0:
            cells = cells[:-1]
        elif r[6] > 0:
            cells.append("x")
        lines.append(",".join(cells))
    f, m = _mapped(tmp, "\n".join(lines) + "\n")
    ds = Dataset(tmp / "ds", create=True)
    res = ingest(open_reader(f, mapping=m), ds)
    loaded = ds.read("transactions").column("source_line").to_pylist()
    quarantined = ds.read("quarantine").column("source_line").to_pylist()
    assert len(loaded) == len(set(loaded)) and len(quarantined) == len(set(quarantined))
    assert not set(loaded) & set(quarantined)
    # Each record starts on one line; multi-line quoted records make some lines continuations.
    assert len(loaded) + len(quarantined) == len(rows)
    assert res.loaded.get("transactions", 0) == len(loaded)


def test_core_banking_statement_mapping_gb18030(tmp_path: Path) -> None:
    """A Chinese core-banking statement export: GB18030, Beijing time, debit/credit flags."""
    data = Path(__file__).parent / "data" / "mapped"
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(data / "core_banking_gb18030.csv", mapping=data / "core_banking.toml"), ds)
    assert res.loaded == {"transactions": 5}
    assert res.quarantined == {"transactions": 4}
    assert [(line, field) for line, field, _ in _quarantine(ds)] == [
        (6, "src_account"),
        (7, "amount"),
        (8, "ts"),
        (10, None),
    ]
    assert _quarantine(ds)[0][2].startswith("借贷标志 'X' is neither debit ['借', 'D'] nor credit ['贷', 'C']")
    rows = (
        ds.connect()
        .execute(
            "SELECT txn_id, ts::VARCHAR, src_account, dst_account, amount, currency, channel, purpose "
            "FROM transactions ORDER BY txn_id"
        )
        .fetchall()
    )
    assert rows == [
        ("T0001", "2024-03-01 01:15:02+00", "6222020001", "6222020002", 1200.0, "CNY", "transfer", "房租"),
        ("T0002", "2024-03-01 02:00:00+00", "CASH", "6222020001", 49999.99, "CNY", "cash", "现金存款"),
        ("T0003", "2024-03-01 02:05:00+00", "CASH", "6222020001", 50000.0, "CNY", "cash", "现金存款"),
        ("T0004", "2024-03-02 15:59:59+00", "6222020001", "HK0001", 8000.0, "HKD", "wire", "货款"),
        ("T0008", "2024-03-03 00:00:00+00", "6222020004", "6222020001", 1000.0, "JPY", "mobile", "退款"),
    ]


def test_fully_quoted_export_fast_path(tmp_path: Path) -> None:
    """Every field quoted (many exporters do this), commas inside quotes, one short row."""
    q = '"{}"'.format
    rows = [",".join(q(c) for c in HEADER.split(","))]
    for i in range(2000):
        rows.append(
            ",".join([q(f"t{i}"), q("2024-03-01 09:00:00"), q(f"Acme, Ltd {i}"), q("B"), q(f"{i + 1}.5"), q("CNY")])
        )
    rows[1500] = ",".join([q("short"), q("2024-03-01 09:00:00"), q("A")])
    f, m = _mapped(tmp_path, "\n".join(rows) + "\n")
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(f, mapping=m), ds)
    assert res.loaded == {"transactions": 1999}
    assert [(line, field) for line, field, _ in _quarantine(ds)] == [(1501, None)]
    got = ds.connect().execute("SELECT src_account, source_line FROM transactions WHERE txn_id = 't1998'").fetchall()
    assert got == [("Acme, Ltd 1998", 2000)]
