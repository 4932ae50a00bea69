"""Ingest the team's real data sets and check exact counts: loaded, quarantined, labelled per typology."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import shared
from tianluo.ingest import ingest, open_reader
from tianluo.store import Dataset


def _typologies(ds: Dataset) -> dict[str, int]:
    con = ds.connect()
    rows = con.execute("SELECT typology, count(*) FROM transactions WHERE typology IS NOT NULL GROUP BY 1").fetchall()
    return dict(rows)


def test_amlsim_sample_exact_counts(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(shared("amlsim-sample")), ds)
    assert res.loaded == {"accounts": 1446, "parties": 1446, "transactions": 121_457}
    assert res.quarantined == {}
    assert ds.count("transactions") == 121_457
    con = ds.connect()
    assert con.execute("SELECT count(*) FROM transactions WHERE label = 1").fetchall()[0][0] == 65
    assert _typologies(ds) == {"cycle": 28, "fan_in": 20, "fan_out": 17}
    # Every labelled transaction belongs to an AMLSim alert, named as an attempt.
    assert (
        con.execute("SELECT count(*) FROM transactions WHERE label = 1 AND attempt_id LIKE 'alert-%'").fetchall()[0][0]
        == 65
    )
    # AMLSim amounts are USD; every row is normalised to CNY with the dated FX table.
    assert con.execute("SELECT count(*) FROM transactions WHERE amount_cny IS NULL").fetchall()[0][0] == 0
    # Day partitions: one folder per simulated day that has transactions.
    days = {p.parent.name for p in ds.files("transactions")}
    assert all(d.startswith("day=2017-") or d.startswith("day=2018-") for d in days)
    assert len(days) == con.execute("SELECT count(DISTINCT CAST(ts AS DATE)) FROM transactions").fetchall()[0][0]


def test_amlsim_typologies_exact_counts(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    res = ingest(open_reader(shared("amlsim-typologies")), ds)
    assert res.loaded["transactions"] == 9904
    assert res.quarantined == {}
    assert _typologies(ds) == {"cycle": 5, "fan_in": 4, "fan_out": 4, "gather_scatter": 10, "scatter_gather": 10}
    banks = ds.connect().execute("SELECT DISTINCT src_bank FROM transactions ORDER BY 1").fetchall()
    assert [b[0] for b in banks] == ["bank_a", "bank_b", "bank_c"]


def test_amlsim_pii_is_tokenized(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    src = shared("amlsim-sample")
    ingest(open_reader(src), ds)
    parties = ds.read("parties")
    assert parties.num_rows == 1446
    names = parties.column("name").to_pylist()
    assert all(n.startswith("tk1.") for n in names)
    # The raw values of the source never reach a stored file.
    raw = (src / "accounts.csv").read_text().splitlines()[1].split(",")
    first, last, ssn = raw[12], raw[13], raw[21]
    for p in (ds.root).rglob("*.parquet"):
        blob = p.read_bytes()
        for secret in (ssn, f"{first} {last}"):
            assert secret.encode() not in blob, f"{secret} found in {p}"


def test_amlworld_sample(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    trans = shared("amlworld-format") / "HI-Small_Trans.sample.csv"
    patterns = shared("amlworld-format") / "HI-Small_Patterns.sample.txt"
    res = ingest(open_reader(trans, patterns=patterns), ds)
    assert res.loaded == {"transactions": 1000}
    assert res.quarantined == {}
    # The sample's 26 pattern rows are not among its first 1,000 transactions.
    assert res.report["notes"]["pattern_rows"] == 26
    assert res.report["notes"]["pattern_rows_matched"] == 0
    con = ds.connect()
    assert con.execute("SELECT DISTINCT currency FROM transactions").fetchall() == [("USD",)]
    # Rows paying the account itself (720 of them reinvestments) are flagged, not dropped.
    assert con.execute("SELECT count(*) FROM transactions WHERE self_transfer").fetchall()[0][0] == 732
    assert (
        con.execute("SELECT count(*) FROM transactions WHERE self_transfer AND channel = 'reinvestment'").fetchall()[0][
            0
        ]
        == 720
    )
    first = con.execute(
        "SELECT src_account, src_bank, amount, channel, ts::VARCHAR FROM transactions WHERE source_line = 3"
    ).fetchall()[0]
    assert first == ("3208:8000F4580", "3208", 0.01, "cheque", "2022-09-01 00:20:00+00")


@pytest.fixture
def amlworld_with_patterns(tmp_path: Path) -> Path:
    """The sample Trans file with the pattern rows appended, as in the full AMLworld sets."""
    src = shared("amlworld-format")
    rows = [
        ln
        for ln in (src / "HI-Small_Patterns.sample.txt").read_text().splitlines()
        if ln and not ln.startswith(("BEGIN", "END"))
    ]
    out = tmp_path / "HI-Small_Trans.csv"
    out.write_text((src / "HI-Small_Trans.sample.csv").read_text() + "\n".join(rows) + "\n")
    (tmp_path / "HI-Small_Patterns.txt").write_text((src / "HI-Small_Patterns.sample.txt").read_text())
    return out


def test_amlworld_patterns_label_typologies(tmp_path: Path, amlworld_with_patterns: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    reader = open_reader(amlworld_with_patterns)  # finds HI-Small_Patterns.txt beside the file
    res = ingest(reader, ds)
    assert res.loaded == {"transactions": 1026}
    assert res.report["notes"]["pattern_rows_matched"] == 26
    assert _typologies(ds) == {"fan_out": 16, "cycle": 10}
    con = ds.connect()
    attempts = con.execute(
        "SELECT attempt_id, typology, count(*) FROM transactions WHERE attempt_id IS NOT NULL GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert attempts == [("HI-Small#1", "fan_out", 16), ("HI-Small#2", "cycle", 10)]
    # Zero-padded bank ids in the pattern rows resolve to the same canonical account.
    fan_src = con.execute(
        "SELECT DISTINCT src_account, src_bank FROM transactions WHERE typology = 'fan_out'"
    ).fetchall()
    assert fan_src == [("21174:800737690", "021174")]
    # Multi-currency rows keep the received side, and CNY normalisation covers every currency.
    assert con.execute("SELECT count(*) FROM transactions WHERE amount_cny IS NULL").fetchall()[0][0] == 0
    yen = con.execute("SELECT amount, currency, amount_cny FROM transactions WHERE currency = 'JPY'").fetchall()
    assert yen and all(0.02 < cny / amt < 0.08 for amt, _, cny in yen)


def test_reingest_is_idempotent(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds", create=True)
    trans = shared("amlworld-format") / "HI-Small_Trans.sample.csv"
    first = ingest(open_reader(trans), ds)
    before = sorted(p.name for p in ds.root.rglob("*.parquet"))
    again = ingest(open_reader(trans), Dataset(tmp_path / "ds"))
    assert again.skipped and again.previous == first.ingest_id
    assert Dataset(tmp_path / "ds").count("transactions") == 1000
    assert sorted(p.name for p in ds.root.rglob("*.parquet")) == before


def test_overlapping_file_duplicates_are_quarantined(tmp_path: Path) -> None:
    src = shared("amlsim-typologies")
    ds = Dataset(tmp_path / "ds", create=True)
    ingest(open_reader(src), ds)
    # A second delivery repeating 10 transactions and adding 2 new ones.
    lines = (src / "accounts.csv").read_text()
    import gzip

    tx = gzip.decompress((src / "transactions.csv.gz").read_bytes()).decode().splitlines()
    extra = tmp_path / "delivery2"
    extra.mkdir()
    new = [
        tx[0],
        *tx[1:11],
        "99001,19,17,TRANSFER,10.5,2017-06-01T00:00:00Z,False,-1",
        "99002,24,17,TRANSFER,11.5,2017-06-01T00:00:00Z,False,-1",
    ]
    (extra / "transactions.csv").write_text("\n".join(new) + "\n")
    (extra / "accounts.csv").write_text(lines)
    res = ingest(open_reader(extra), ds)
    assert res.loaded["transactions"] == 2
    assert res.quarantined["transactions"] == 10
    q = ds.read("quarantine", "ingest_id = '" + res.ingest_id + "'")
    reasons = set(q.column("reason").to_pylist())
    assert all("already in the dataset" in r for r in reasons)
    assert sorted(q.column("source_line").to_pylist()) == list(range(2, 12))
    assert ds.count("transactions") == 9906
    # Accounts are state: the newer delivery supersedes, no duplicates visible.
    assert ds.count("accounts") == 389


def test_quarantine_file_is_readable_parquet(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("id,when,from,to,amt\n1,2024-01-01 10:00:00,a,b,-3\n")
    m = tmp_path / "m.toml"
    m.write_text(
        '[columns]\ntxn_id="id"\nts="when"\nsrc_account="from"\ndst_account="to"\namount="amt"\n'
        '[source]\nts_format="%Y-%m-%d %H:%M:%S"\n[defaults]\ncurrency="CNY"\nchannel="transfer"\n'
    )
    ds = Dataset(tmp_path / "ds", create=True)
    ingest(open_reader(f, mapping=m), ds)
    q = pq.read_table(ds.files("quarantine")[0])
    assert q.num_rows == 1
    assert q.column("reason")[0].as_py() == "amount must be > 0, got -3.0"
