"""Personal data at rest: after an ingest nothing stored holds a raw value; the vault gives them back, audited."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tianluo.ingest import ingest, open_reader
from tianluo.protect import Tokenizer, Vault, WrongKeyError, load_key, load_keyring
from tianluo.simulate import SimConfig, simulate, write_source
from tianluo.store import Dataset

PII = ("name", "id_number", "phone", "address", "uscc")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    out = tmp_path_factory.mktemp("src")
    sim = simulate(SimConfig(persons=300, enterprises=30, days=10, transactions=3000, seed=11))
    write_source(sim, out, "parquet")
    return out, sim.parties


def _raw_values(parties: pa.Table) -> set[str]:
    values: set[str] = set()
    for f in PII:
        if f in parties.column_names:
            values.update(v for v in parties.column(f).to_pylist() if v and len(v) >= 4)
    return values


def _strings(table: pa.Table) -> set[str]:
    found: set[str] = set()
    for col in table.columns:
        t = col.type
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            col = pa.chunked_array([c.flatten() for c in col.chunks], t.value_type)
            t = t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            found.update(v for v in col.to_pylist() if v)
    return found


def test_no_raw_pii_anywhere_in_the_dataset_or_vault(source: tuple[Path, pa.Table], tmp_path: Path) -> None:
    src, parties = source
    raw = _raw_values(parties)
    assert len(raw) > 500  # names, IDs, phones, addresses and USCCs of 330 parties
    ring = load_keyring(None, load_key(None, create=True), create=True)
    ds = Dataset(tmp_path / "ds", create=True)
    vault_path = tmp_path / "vault.sqlite"
    with Vault(vault_path, ring) as vault:
        res = ingest(open_reader(src), ds, tokenizer=vault)
    assert res.loaded["parties"] == parties.num_rows

    # Every string cell of every Parquet file (compressed pages hide raw bytes, so read them).
    stored: set[str] = set()
    for f in ds.root.rglob("*.parquet"):
        stored |= _strings(pq.read_table(f))
    assert stored and not (stored & raw)
    # Every other file byte by byte: manifest, quality reports, DuckDB catalogue, the vault and its audit log.
    blobs = [p for p in ds.root.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    blobs += [p for p in tmp_path.iterdir() if p.is_file()]
    assert vault_path in blobs
    for p in blobs:
        data = p.read_bytes()
        leaked = [v for v in raw if v.encode() in data]
        assert not leaked, f"{p.name} holds raw personal data, e.g. {leaked[0]!r}"

    # The vault gives the values back for the stored tokens.
    stored_parties = ds.read("parties").sort_by("party_id")
    want = parties.sort_by("party_id")
    with Vault(vault_path, ring) as vault:
        got = vault.reveal("id_number", stored_parties.column("id_number"), reason="test", actor="t")
    assert got.to_pylist() == want.column("id_number").to_pylist()


def test_ingest_with_another_key_is_refused(source: tuple[Path, pa.Table], tmp_path: Path) -> None:
    src, _ = source
    ds = Dataset(tmp_path / "ds", create=True)
    first = ingest(open_reader(src), ds, tokenizer=Tokenizer(bytes(range(32))))
    assert ds.ingests[-1]["key_check"].startswith("1:")
    # A second source (different content) with a different master key: its tokens would not join.
    other = tmp_path / "other"
    write_source(simulate(SimConfig(persons=100, enterprises=20, days=7, transactions=300, seed=12)), other, "parquet")
    with pytest.raises(WrongKeyError, match="would not join"):
        ingest(open_reader(other), ds, tokenizer=Tokenizer(bytes(range(1, 33))))
    assert [w["id"] for w in ds.ingests] == [first.ingest_id]  # nothing was committed
    ok = ingest(open_reader(other), ds, tokenizer=Tokenizer(bytes(range(32))))
    assert not ok.skipped and len(ds.ingests) == 2
