"""SM3/SM4/HMAC-SM3 standard vectors, deterministic tokens, the vault, its audit chain and key errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tianluo.protect import (
    AuditError,
    Keyring,
    MasterKeyError,
    Tokenizer,
    Vault,
    VaultError,
    WrongKeyError,
    _sm3,
    keys,
    load_key,
    load_keyring,
    token_version,
    verify_audit,
)
from tianluo.protect.tokens import BatchHmacSm3
from tianluo.protect.vault import audit_path

from .conftest import TEST_KEY

MASTER = bytes.fromhex(TEST_KEY)
OTHER = bytes(range(32))

# --- GB/T 32905, GB/T 32907, GM/T 0042 vectors (REGULATIONS.md §5) ------------------------------

SM3_VECTORS = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]
_LONG = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" * 2
HMAC_SM3_VECTORS = [
    (bytes(range(1, 33)), _LONG, "ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a"),
    (bytes(range(1, 38)), b"\xcd" * 50, "220bf579ded555393f0159f66c99877822a3ecf610d1552154b41d44b94db3ae"),
    (b"\x0b" * 32, b"Hi There", "c0ba18c68b90c88bc07de794bfc7d2c8d19ec31ed8773bc2b390c9604e0be11e"),
    (b"Jefe", b"what do ya want for nothing?", "2e87f1d16862e6d964b50a5200bf2b10b764faa9680a296a2405f24bec39f882"),
    (b"\x0b" * 20, b"Hi There", "51b00d1fb49832bfb01c3ce27848e59f871d9ba938dc563b338ca964755cce70"),
]


def _kernel_sm3(message: bytes) -> str:
    state = _sm3.sm3_state(np.frombuffer(message, np.uint8), _sm3.SM3_IV)
    return _sm3.state_bytes(state).hex()


def _kernel_hmac(key: bytes, messages: list[bytes]) -> list[str]:
    offsets = np.zeros(len(messages) + 1, np.int64)
    np.cumsum([len(m) for m in messages], out=offsets[1:])
    data = np.frombuffer(b"".join(messages), np.uint8)
    return [d.tobytes().hex() for d in BatchHmacSm3(key).digests(b"", data, offsets)]


@pytest.mark.parametrize(("message", "digest"), SM3_VECTORS)
def test_sm3_standard_vectors(message: bytes, digest: str) -> None:
    assert keys.sm3_hex(message) == digest  # OpenSSL
    assert _kernel_sm3(message) == digest  # the compiled kernel tokens use


def test_sm4_standard_vectors() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert enc.update(key).hex() == "681edf34d206965e86b3e94f536e4246"
    block = key
    for _ in range(1_000_000):
        block = enc.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


@pytest.mark.parametrize(("key", "message", "mac"), HMAC_SM3_VECTORS)
def test_hmac_sm3_standard_vectors(key: bytes, message: bytes, mac: str) -> None:
    assert hmac.new(key, message, "sm3").hexdigest() == mac
    assert _kernel_hmac(key, [message]) == [mac]


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=64), st.lists(st.binary(max_size=300), max_size=20))
def test_kernel_hmac_equals_openssl_on_any_input(key: bytes, messages: list[bytes]) -> None:
    key = key or b"k"
    assert _kernel_hmac(key, messages) == [hmac.new(key, m, "sm3").hexdigest() for m in messages]


def test_kernel_sm3_every_padding_boundary() -> None:
    rng = np.random.default_rng(0)
    for length in range(0, 200):
        m = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        assert _kernel_sm3(m) == hashlib.new("sm3", m).hexdigest(), length


# --- deterministic tokens ----------------------------------------------------------------------


def test_version_1_tokens_are_those_of_the_first_tokenizer() -> None:
    """Datasets tokenized before the keyring existed still join: same key, same tk1 tokens."""
    sub = hmac.new(MASTER, b"tianluo/deterministic-token/v1", "sm3").digest()
    old = "tk1." + hmac.new(sub, b"name\x00" + "王小明".encode(), "sm3").hexdigest()[:32]
    assert Tokenizer(MASTER).tokenize("name", pa.array(["王小明"])).to_pylist() == [old]
    assert Tokenizer(Keyring.from_master(MASTER)).token("name", "王小明") == old


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), max_size=40), st.sampled_from(["name", "address", "id"]))
def test_batch_tokens_equal_the_openssl_reference(values: list[str | None], field: str) -> None:
    t = Tokenizer(MASTER)
    expected = [t.token(field, v) if v else None for v in values]
    assert t.tokenize(field, pa.array(values, pa.string())).to_pylist() == expected


def test_tokenize_accepts_every_arrow_string_layout() -> None:
    t = Tokenizer(MASTER)
    values = ["张伟", None, "", "13800138000", "李娜"]
    want = t.tokenize("name", pa.array(values)).to_pylist()
    assert want[1] is None and want[2] is None  # no value, no token: nothing links on "unknown"
    chunked = pa.chunked_array([pa.array(values[:2]), pa.array(values[2:])])
    sliced = pa.array(["x", *values])[1:]
    for arr in (pa.array(values, pa.large_string()), pa.array(values, pa.string_view()), chunked, sliced):
        assert t.tokenize("name", arr).to_pylist() == want
    assert t.tokenize("name", pa.array([], pa.string())).to_pylist() == []


def test_tokens_are_stable_across_runs_and_differ_by_key_and_field(tmp_path: Path) -> None:
    values = pa.array(["110101199003077774", "陈静"])
    here = Tokenizer(MASTER).tokenize("id_number", values).to_pylist()
    code = (
        "import pyarrow as pa; from tianluo.protect import Tokenizer;"
        f"t = Tokenizer(bytes.fromhex('{TEST_KEY}'));"
        f"print(t.tokenize('id_number', pa.array({values.to_pylist()!r})).to_pylist())"
    )
    other_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other_run.strip() == repr(here)
    assert Tokenizer(OTHER).tokenize("id_number", values).to_pylist() != here
    assert Tokenizer(MASTER).tokenize("phone", values).to_pylist() != here
    assert all(token_version(t) == 1 for t in here)


def test_key_check_value_refuses_a_different_key() -> None:
    recorded = Tokenizer(MASTER).key_check_value
    Tokenizer(MASTER).check(recorded)
    with pytest.raises(WrongKeyError, match="would not join"):
        Tokenizer(OTHER).check(recorded)


# --- keys -----------------------------------------------------------------------------------------


def test_missing_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIANLUO_MASTER_KEY")
    monkeypatch.setattr(keys, "DEFAULT_KEY_FILE", tmp_path / "none" / "master.key")
    with pytest.raises(MasterKeyError, match="no master key: set \\$TIANLUO_MASTER_KEY"):
        load_key()
    monkeypatch.setenv("TIANLUO_MASTER_KEY", "not hex")
    with pytest.raises(MasterKeyError, match="not hex"):
        load_key()
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_key(tmp_path / "absent.key")


def test_wrong_master_key_is_detected_not_garbage(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.create(path, MASTER).rotate()
    with pytest.raises(WrongKeyError, match="does not match keyring"):
        Keyring.open(path, OTHER)
    ring = Keyring.open(path, MASTER)
    assert ring.versions == [1, 2] and ring.current == 2


def test_altered_keyring_entry_fails_its_mac(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.create(path, MASTER).rotate()
    doc = json.loads(path.read_text())
    doc["versions"]["1"], doc["versions"]["2"] = doc["versions"]["2"], doc["versions"]["1"]
    path.write_text(json.dumps(doc))
    with pytest.raises(WrongKeyError, match="fails its MAC"):
        Keyring.open(path, MASTER)


def test_load_keyring_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIANLUO_KEYRING", str(tmp_path / "ring.json"))
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_keyring()
    ring = load_keyring(create=True)  # master key from $TIANLUO_MASTER_KEY (conftest)
    assert ring.path == tmp_path / "ring.json" and ring.key_check_value == keys.key_check_value(MASTER)
    with pytest.raises(ValueError, match="is current"):
        ring.retire(1)


def test_master_key_rotation_changes_no_token(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    ring = Keyring.create(path, MASTER)
    ring.rotate()
    before = {v: Tokenizer(ring, version=v).token("name", "周杰") for v in ring.versions}
    ring.rewrap(OTHER)
    with pytest.raises(WrongKeyError):
        Keyring.open(path, MASTER)
    again = Keyring.open(path, OTHER)
    assert {v: Tokenizer(again, version=v).token("name", "周杰") for v in again.versions} == before
    assert again.audit_key == ring.audit_key


# --- vault -------------------------------------------------------------------------------------------


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault(tmp_path / "vault" / "pii.sqlite", Keyring.create(tmp_path / "keyring.json", MASTER)) as v:
        yield v


NAMES = st.text(
    alphabet=st.sampled_from("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁 ·abcXYZ-'0129")
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), st.just(""), NAMES, st.text(max_size=200)), max_size=30))
def test_put_then_reveal_is_the_identity(vault: Vault, values: list[str | None]) -> None:
    tokens = vault.put("name", pa.array(values, pa.string()))
    assert tokens.to_pylist() == Tokenizer(vault.keyring).tokenize("name", pa.array(values, pa.string())).to_pylist()
    revealed = vault.reveal("name", tokens, reason="test", actor="hypothesis").to_pylist()
    # An empty string has no token (it would link every party without a value), so it reveals as null.
    assert revealed == [v if v else None for v in values]


def test_reveal_needs_a_reason_and_an_actor(vault: Vault) -> None:
    tokens = vault.put("phone", pa.array(["13800138000"]))
    with pytest.raises(ValueError, match="reason is required"):
        vault.reveal("phone", tokens, reason=" ", actor="analyst")
    with pytest.raises(ValueError, match="actor"):
        vault.reveal("phone", tokens, reason="case 17", actor="")
    assert vault.verify_audit().entries == 0


def test_reveal_refuses_unknown_tokens_and_other_fields(vault: Vault) -> None:
    tokens = vault.put("phone", pa.array(["13800138000"]))
    with pytest.raises(VaultError, match="belongs to field 'phone'"):
        vault.reveal("name", tokens, reason="case 17", actor="analyst")
    with pytest.raises(VaultError, match="not in vault"):
        vault.reveal("phone", ["tk1." + "0" * 32], reason="case 17", actor="analyst")
    assert vault.verify_audit().entries == 2  # failed attempts are audited too


def _sealed(vault: Vault) -> list[tuple[str, bytes]]:
    return vault._db.execute("SELECT token, sealed FROM entries ORDER BY token").fetchall()


def test_tampered_ciphertext_is_rejected(vault: Vault) -> None:
    tokens = vault.put("name", pa.array(["欧阳娜娜", "司马光"]))
    db = sqlite3.connect(vault.path)
    (t0, s0), (_, s1) = _sealed(vault)
    flipped = s0[:20] + bytes([s0[20] ^ 1]) + s0[21:]
    db.execute("UPDATE entries SET sealed = ? WHERE token = ?", (flipped, t0))
    db.commit()
    with pytest.raises(VaultError, match="fails its HMAC-SM3 check"):
        vault.reveal("name", tokens, reason="case 3", actor="analyst")
    # Moving a valid entry to another token is caught too: the MAC covers the token.
    db.execute("UPDATE entries SET sealed = ? WHERE token = ?", (s1, t0))
    db.commit()
    with pytest.raises(VaultError, match="fails its HMAC-SM3 check"):
        vault.reveal("name", [t0], reason="case 3", actor="analyst")


def test_vault_with_the_wrong_key_is_refused(vault: Vault, tmp_path: Path) -> None:
    vault.put("name", pa.array(["钱学森"]))
    with pytest.raises(WrongKeyError, match="open it with the master key"):
        Vault(vault.path, Keyring.from_master(OTHER))
    vault.check(Tokenizer(MASTER).key_check_value)  # what ingest compares with the dataset's record
    with pytest.raises(WrongKeyError, match="would not join"):
        vault.check(Tokenizer(OTHER).key_check_value)


def test_vault_may_not_live_inside_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "_manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="inside the dataset"):
        Vault(tmp_path / "ds" / "sub" / "vault.sqlite", Keyring.from_master(MASTER))


# --- audit chain ------------------------------------------------------------------------------------


def _three_reveals(vault: Vault) -> Path:
    tokens = vault.put("name", pa.array(["孙悟空", "猪八戒"]))
    for i, who in enumerate(["analyst-a", "analyst-b", "mlro"]):
        vault.reveal("name", tokens[: i + 1], reason=f"case {i}", actor=who)
    return audit_path(vault.path)


def test_audit_records_every_reveal(vault: Vault) -> None:
    log = _three_reveals(vault)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["actor"], e["reason"], e["fields"], e["count"]) for e in entries] == [
        ("analyst-a", "case 0", {"name": 1}, 1),
        ("analyst-b", "case 1", {"name": 2}, 2),
        ("mlro", "case 2", {"name": 2}, 2),
    ]
    assert verify_audit(log).entries == 3
    assert vault.verify_audit().entries == 3


def test_audit_edit_is_detected(vault: Vault) -> None:
    log = _three_reveals(vault)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1].replace("case 1", "case 9") + lines[2])
    with pytest.raises(AuditError, match="line 2: SM3 hash does not match"):
        verify_audit(log)


def test_audit_removal_is_detected(vault: Vault) -> None:
    log = _three_reveals(vault)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2])
    with pytest.raises(AuditError, match="line 2: entry 3 follows 1"):
        verify_audit(log)
    log.write_text(lines[0] + lines[1])  # the newest entry dropped: only the vault's head shows it
    assert verify_audit(log).entries == 2
    with pytest.raises(AuditError, match="entries were removed"):
        vault.verify_audit()
    with pytest.raises(AuditError, match="truncated or replaced"):
        vault.reveal("name", vault.put("name", pa.array(["沙僧"])), reason="case 4", actor="analyst")


def test_a_crash_between_log_and_vault_record_is_recovered_but_a_forged_entry_is_not(vault: Vault) -> None:
    log = _three_reveals(vault)
    lines = log.read_text().splitlines(keepends=True)
    # As if the process died after appending entry 3 but before the vault recorded it.
    vault._set_meta("audit_head", json.loads(lines[1])["hash"])
    tokens = vault.put("name", pa.array(["唐僧"]))
    vault.reveal("name", tokens, reason="case 5", actor="analyst")
    assert vault.verify_audit().entries == 4
    forged = json.loads(log.read_text().splitlines()[-1])
    forged.update(seq=5, prev=forged["hash"], hash="f" * 64, mac="0" * 64)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(forged) + "\n")
    with pytest.raises(AuditError, match="truncated or replaced"):
        vault.reveal("name", tokens, reason="case 6", actor="analyst")


def test_audit_rewritten_with_a_valid_chain_fails_the_keyed_mac(vault: Vault) -> None:
    log = _three_reveals(vault)
    prev, out = "0" * 64, []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        entry.pop("hash"), entry.pop("mac")
        entry["actor"], entry["prev"] = "nobody", prev
        prev = keys.sm3_hex(json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        out.append(json.dumps({**entry, "hash": prev, "mac": "0" * 64}, ensure_ascii=False))
    log.write_text("\n".join(out) + "\n")
    assert verify_audit(log).entries == 3  # an unkeyed chain alone can be forged…
    with pytest.raises(AuditError, match="line 1: HMAC-SM3 does not match"):
        vault.verify_audit()  # …the keyed one cannot


# --- ingest integration (Vault in place of Tokenizer) -------------------------------------------


def test_validate_accepts_a_vault_as_its_tokenizer(vault: Vault) -> None:
    from tianluo.ingest.base import RawBatch
    from tianluo.ingest.validate import validate
    from tianluo.reference.currency import FxTable

    raw = pa.table(
        {
            "party_id": ["p1", "p2"],
            "kind": ["person", "enterprise"],
            "name": ["张三", "杭州恒达贸易有限公司"],
            "id_number": ["110101199003077774", None],
            "_file": ["parties.csv", "parties.csv"],
            "_line": pa.array([2, 3], pa.int64()),
        }
    )
    v = validate(RawBatch("parties", raw), ingest_id="t", fx=FxTable.load(), tokenizer=vault)  # type: ignore[arg-type]
    names = v.loaded.column("name")
    assert names.to_pylist() == Tokenizer(MASTER).tokenize("name", raw.column("name")).to_pylist()
    assert vault.reveal("name", names, reason="KYC refresh", actor="ops").to_pylist() == [
        "张三",
        "杭州恒达贸易有限公司",
    ]
    ids = v.loaded.column("id_number")
    assert vault.reveal("id_number", ids, reason="KYC refresh", actor="ops").to_pylist() == ["110101199003077774", None]
