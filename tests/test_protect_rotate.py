"""Key rotation keeps joins: equal raw values have equal tokens after rotation, and the vault still reveals."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tianluo.protect import Keyring, RotationError, Tokenizer, Vault, VaultError, retokenize_parquet, token_version

from .conftest import TEST_KEY

MASTER = bytes.fromhex(TEST_KEY)
PEOPLE = ["张伟", "王芳", "李娜", "刘洋"]
IDS = ["110101199003077774", "310104198512120016", "440305200001011238", "510107197707070020"]


def _write_dataset(root: Path, vault: Vault) -> tuple[Path, Path]:
    """Two files that share tokens: parties, and a watch-list hit table keyed by the same ID tokens."""
    root.mkdir()
    parties = pa.table(
        {
            "party_id": ["p1", "p2", "p3", "p4"],
            "name": vault.put("name", pa.array(PEOPLE)),
            "id_number": vault.put("id_number", pa.array(IDS)),
            "region": ["110101", "310104", "440305", "510107"],
        }
    )
    hits = pa.table(
        {"id_number": vault.put("id_number", pa.array([IDS[2], IDS[0], IDS[2]])), "list": ["pep", "ofac", "un"]}
    )
    pq.write_table(parties, root / "parties.parquet", compression="lz4")
    pq.write_table(hits, root / "hits.parquet")
    return root / "parties.parquet", root / "hits.parquet"


def test_rotation_keeps_joins_and_reveals(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "keys" / "keyring.json", MASTER)
    vault = Vault(tmp_path / "keys" / "vault.sqlite", ring)
    parties_file, hits_file = _write_dataset(tmp_path / "ds", vault)
    old_ids = pq.read_table(parties_file).column("id_number").to_pylist()

    mapping = vault.rotate(actor="security-officer", reason="annual key rotation")
    assert ring.current == 2 and mapping.num_rows == len(PEOPLE) + len(IDS)
    replaced = retokenize_parquet([parties_file, hits_file], mapping)
    assert replaced == {str(parties_file): 8, str(hits_file): 3}

    parties, hits = pq.read_table(parties_file), pq.read_table(hits_file)
    assert parties.column("region").to_pylist() == ["110101", "310104", "440305", "510107"]  # untouched
    new_ids = parties.column("id_number").to_pylist()
    assert {token_version(t) for t in new_ids + parties.column("name").to_pylist()} == {2}
    # Joins survive: the hit rows still point at the same parties.
    assert hits.column("id_number").to_pylist() == [new_ids[2], new_ids[0], new_ids[2]]
    # New ingests (current key version) produce exactly the rotated tokens.
    assert Tokenizer(ring).tokenize("id_number", pa.array(IDS)).to_pylist() == new_ids
    # The vault reveals new tokens, and old ones until their version is purged.
    assert vault.reveal("id_number", new_ids, reason="case 5", actor="analyst").to_pylist() == IDS
    assert vault.reveal("id_number", old_ids, reason="case 5", actor="analyst").to_pylist() == IDS
    assert vault.purge(1) == 8
    with pytest.raises(VaultError, match="not in vault"):
        vault.reveal("id_number", old_ids, reason="case 5", actor="analyst")
    ring.retire(1)
    reopened = Vault(vault.path, Keyring.open(ring.path, MASTER))
    assert reopened.reveal("name", parties.column("name"), reason="case 5", actor="analyst").to_pylist() == PEOPLE
    assert reopened.verify_audit().entries == 5  # 4 reveals and the rotation itself


def test_a_token_missing_from_the_vault_stops_rotation_before_writing(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "keyring.json", MASTER)
    vault = Vault(tmp_path / "vault.sqlite", ring)
    stray = Tokenizer(ring).tokenize("name", pa.array(["不在库里"]))  # tokenized without the vault
    path = tmp_path / "parties.parquet"
    pq.write_table(pa.table({"name": pa.concat_arrays([vault.put("name", pa.array(["赵敏"])), stray])}), path)
    before = path.read_bytes()
    mapping = vault.rotate(actor="security-officer", reason="rotation")
    with pytest.raises(RotationError, match="never put in the vault"):
        retokenize_parquet([path], mapping)
    assert path.read_bytes() == before


def test_an_interrupted_rotation_resumes_to_the_same_version(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "keyring.json", MASTER)
    vault = Vault(tmp_path / "vault.sqlite", ring)
    vault.put("name", pa.array(PEOPLE))
    first = vault.rotate(actor="so", reason="rotation")
    again = vault.rotate(actor="so", reason="resume rotation", to_version=2)
    assert ring.versions == [1, 2] and again.equals(first)
    assert vault.count() == 2 * len(PEOPLE)
