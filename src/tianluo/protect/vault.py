"""The token vault: SM4-CTR + HMAC-SM3 encrypted values by token, and an audited, hash-chained reveal.

Deterministic tokens cannot be reversed, so the vault keeps what reversal needs: for each
token, the value encrypted with SM4-CTR under the token's key version and authenticated
(encrypt-then-MAC) with HMAC-SM3 under a separate key. The MAC covers the field, the token,
the IV and the ciphertext, so an entry cannot be edited or moved to another token unnoticed,
and a revealed value is re-tokenized and compared as a last check. `cryptography` has no
SM4-GCM, and encrypt-then-MAC from two standard primitives is the generic composition that
is proven secure (Bellare–Namprempre); CTR needs no padding, and each entry has a random IV.

Every reveal first appends an entry to `<vault>.audit.jsonl` (who, why, when, which field,
how many) whose SM3 hash chains to the previous entry and whose HMAC-SM3 needs the key, and
the vault database remembers the newest entry, so edits, removals, truncation and a forged
rewrite of the whole log are all detected by `verify_audit`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.ciphers import algorithms

from tianluo.protect.fpe import FormatPreservingTokenizer, ecb
from tianluo.protect.keys import Keyring, WrongKeyError, sm3_hex
from tianluo.protect.tokens import BatchHmacSm3, Tokenizer, string_buffers

VAULT_FORMAT = 1
#: Name of a dataset's manifest (see `tianluo.store`): a vault must not live inside a dataset.
DATASET_MANIFEST = "_manifest.json"
GENESIS = "0" * 64
_ENTRY_MAC_LABEL = b"tianluo/vault/v1\x00"


class VaultError(RuntimeError):
    """A vault entry is missing, altered, or belongs to another field; the message names the token."""


class AuditError(RuntimeError):
    """The audit log was edited, truncated or rewritten; the message names the line."""


def audit_path(vault_path: Path) -> Path:
    """Where the audit log of the vault at `vault_path` lives: next to it."""
    return vault_path.with_name(vault_path.name + ".audit.jsonl")


def _canonical(entry: dict[str, object]) -> bytes:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class AuditReport:
    """Result of a successful `verify_audit`: how many entries, and the hash of the newest."""

    entries: int
    head: str


def verify_audit(path: Path | str, *, keyring: Keyring | None = None, head: str | None = None) -> AuditReport:
    """Check an audit log: sequence numbers, the SM3 chain, and (given the keyring) each entry's MAC.

    Without the keyring an attacker who can write the file could recompute the whole chain;
    with it they cannot. `head` (the vault's record of the newest entry) also catches removal
    of entries from the end, which no chain can show by itself.
    """
    path = Path(path)
    prev, seq = GENESIS, 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AuditError(f"{path} line {lineno}: not JSON; the log was edited") from None
            stated, mac = entry.pop("hash", None), entry.pop("mac", None)
            if entry.get("seq") != seq + 1:
                raise AuditError(f"{path} line {lineno}: entry {entry.get('seq')} follows {seq}; entries were removed")
            if entry.get("prev") != prev:
                raise AuditError(f"{path} line {lineno}: does not chain to the entry before it; the log was edited")
            if sm3_hex(_canonical(entry)) != stated:
                raise AuditError(f"{path} line {lineno}: SM3 hash does not match the entry; the entry was edited")
            if keyring is not None:
                want = hmac.new(keyring.audit_key, stated.encode(), "sm3").hexdigest()
                if not hmac.compare_digest(want, str(mac)):
                    raise AuditError(f"{path} line {lineno}: HMAC-SM3 does not match; the log was rewritten")
            prev, seq = stated, seq + 1
    if head is not None and head != prev:
        raise AuditError(f"{path}: the newest entry is not the one the vault recorded; entries were removed")
    return AuditReport(seq, prev)


def _ctr_xor(key: bytes, ivs: np.ndarray, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """SM4-CTR of many messages at once: one batched SM4 call over all their counter blocks.

    Message i uses counter blocks ivs[i], ivs[i]+1, … (128-bit big-endian, as OpenSSL counts),
    so each entry can be decrypted alone with an ordinary SM4-CTR.
    """
    lengths = np.diff(offsets)
    nblocks = (lengths + 15) // 16
    total = int(nblocks.sum())
    if total == 0:
        return data[offsets[0] : offsets[-1]].copy()
    owner = np.repeat(np.arange(len(lengths)), nblocks)
    first = np.concatenate([[0], np.cumsum(nblocks)[:-1]])
    step = (np.arange(total) - first[owner]).astype(np.uint64)
    hi = ivs[owner, :8].copy().view(">u8").ravel().astype(np.uint64)
    lo = ivs[owner, 8:].copy().view(">u8").ravel().astype(np.uint64)
    lo2 = lo + step
    hi += (lo2 < lo).astype(np.uint64)
    counters = np.empty((total, 16), np.uint8)
    counters[:, :8] = hi.astype(">u8")[:, None].view(np.uint8)
    counters[:, 8:] = lo2.astype(">u8")[:, None].view(np.uint8)
    stream = np.frombuffer(ecb(algorithms.SM4(key))(counters.tobytes()), np.uint8)
    # Byte k of message i is XORed with byte (first[i] * 16 + k) of the key stream.
    msg = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(int(lengths.sum())) - (offsets[:-1] - offsets[0])[msg]
    return data[offsets[0] : offsets[-1]] ^ stream[first[msg] * 16 + pos]


def _binary(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class Vault:
    """Token → encrypted value store in one SQLite file, with an audit log beside it.

    `put` is what ingest calls instead of `Tokenizer.tokenize` when values must stay
    revealable (same signature as `tokenize`, same tokens); `reveal` is the only way back.
    """

    def __init__(self, path: Path | str, keyring: Keyring) -> None:
        self.path = Path(path).resolve()
        for parent in self.path.parents:
            if (parent / DATASET_MANIFEST).exists():
                raise ValueError(
                    f"vault {self.path} is inside the dataset {parent}; keep it outside, "
                    "where dataset files are never shared"
                )
        self.keyring = keyring
        self.audit_path = audit_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a batch's B-tree pages stay in memory
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS entries (
                token TEXT PRIMARY KEY, field TEXT NOT NULL, version INTEGER NOT NULL, sealed BLOB NOT NULL
            ) WITHOUT ROWID;
            """
        )
        fmt = self._meta("format")
        if fmt is None:
            self._set_meta("format", str(VAULT_FORMAT))
        elif fmt != str(VAULT_FORMAT):
            raise VaultError(f"vault {self.path} has format {fmt}; this version reads {VAULT_FORMAT}")
        self._check_keys()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _check_keys(self) -> None:
        """Refuse a keyring whose keys differ from those the stored entries were sealed with."""
        for (version,) in self._db.execute("SELECT DISTINCT version FROM entries").fetchall():
            stored = self._meta(f"check:{version}")
            have = self.keyring.keys(version).check_value
            if stored is not None and stored != have:
                raise WrongKeyError(
                    f"vault {self.path} was sealed with key version {version} check value {stored}, "
                    f"the keyring gives {have}; open it with the master key and keyring it was made with"
                )

    # -- deposit -------------------------------------------------------------------------

    def _seal(self, field: str, tokens: list[str], data: np.ndarray, offsets: np.ndarray, version: int) -> list[bytes]:
        """IV || SM4-CTR ciphertext || HMAC-SM3 tag for each value."""
        keys = self.keyring.keys(version)
        n = len(tokens)
        ivs = np.frombuffer(os.urandom(16 * n), np.uint8).reshape(n, 16)
        ct = _ctr_xor(keys.vault_enc, ivs, data, offsets)
        ct_offsets = offsets - offsets[0]
        tags = self._tags(keys.vault_mac, field, tokens, ivs, ct, ct_offsets)
        cts = [ct[ct_offsets[i] : ct_offsets[i + 1]].tobytes() for i in range(n)]
        return [ivs[i].tobytes() + cts[i] + tags[i].tobytes() for i in range(n)]

    @staticmethod
    def _tags(
        mac_key: bytes, field: str, tokens: list[str], ivs: np.ndarray, ct: np.ndarray, ct_offsets: np.ndarray
    ) -> np.ndarray:
        """HMAC-SM3(mac key, label || field || token || IV || ciphertext) for each entry, in one kernel call."""
        n = len(tokens)
        msgs = pc.binary_join_element_wise(
            pa.array(tokens, pa.large_binary()),
            _binary(ivs.ravel(), np.arange(n + 1, dtype=np.int64) * 16),
            _binary(ct, ct_offsets),
            pa.scalar(b"", pa.large_binary()),
        )
        mdata, moffsets, _ = string_buffers(msgs.cast(pa.large_binary()))
        return BatchHmacSm3(mac_key).digests(_ENTRY_MAC_LABEL + field.encode() + b"\x00", mdata, moffsets)

    def put(self, field: str, values: pa.Array | pa.ChunkedArray, *, version: int | None = None) -> pa.Array:
        """Tokenize `values` (as `Tokenizer.tokenize` does) and deposit each new value in the vault."""
        tokenizer = Tokenizer(self.keyring, version=version)
        tokens = tokenizer.tokenize(field, values)
        present = pc.is_valid(tokens)
        distinct = pc.unique(tokens.filter(present))
        # Sorted, so inserts walk the primary-key B-tree in order: several times faster.
        uniq = distinct.take(pc.array_sort_indices(distinct))
        if len(uniq) == 0:
            return tokens
        first = pc.index_in(uniq, value_set=tokens)  # one row per distinct token
        vals = (values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values).take(first)
        data, offsets, _ = string_buffers(vals)
        token_list = uniq.to_pylist()
        sealed = self._seal(field, token_list, data, offsets, tokenizer.version)
        with self._transaction():
            self._set_meta(f"check:{tokenizer.version}", tokenizer.keys.check_value)
            self._db.executemany(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?)",
                zip(token_list, [field] * len(token_list), [tokenizer.version] * len(token_list), sealed, strict=True),
            )
        return tokens

    # Same signature as Tokenizer.tokenize, so ingest can be handed a vault instead of a tokenizer.
    tokenize = put

    @property
    def key_check_value(self) -> str:
        """`Tokenizer.key_check_value` of the keyring's current version (what `put` tokenizes with)."""
        return Tokenizer(self.keyring).key_check_value

    def check(self, recorded: str) -> None:
        """`Tokenizer.check` with the current version: WrongKeyError if data was tokenized with another key."""
        Tokenizer(self.keyring).check(recorded)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- audit ---------------------------------------------------------------------------

    def _audit(self, action: str, *, actor: str, reason: str, fields: dict[str, int], subject: str) -> None:
        """Append one hash-chained, MACed entry; refuse if the log's end is not where the vault left it."""
        if not reason or not reason.strip():
            raise ValueError("a reason is required to decrypt personal data (e.g. the case or request number)")
        if not actor or not actor.strip():
            raise ValueError("an actor (who is decrypting) is required")
        with open(self.audit_path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                prev, seq = self._audit_tail(fh)
                entry: dict[str, object] = {
                    "seq": seq + 1,
                    "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "action": action,
                    "actor": actor,
                    "reason": reason,
                    "fields": fields,
                    "count": sum(fields.values()),
                    "subject": subject,
                    "prev": prev,
                }
                digest = sm3_hex(_canonical(entry))
                entry["hash"] = digest
                entry["mac"] = hmac.new(self.keyring.audit_key, digest.encode(), "sm3").hexdigest()
                fh.write((json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode())
                fh.flush()
                os.fsync(fh.fileno())
                self._set_meta("audit_head", digest)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _audit_tail(self, fh: BinaryIO) -> tuple[str, int]:
        """Hash and number of the log's newest entry, checked against the vault's record of it.

        The one mismatch accepted is a crash between appending an entry and recording it: the
        newest entry then chains to the recorded one and carries a valid MAC, and is adopted.
        """
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            newest: dict[str, object] = {"hash": GENESIS, "seq": 0}
        else:
            fh.seek(max(0, size - 65536))
            tail = fh.read().rstrip(b"\n")
            if b"\n" not in tail and size > 65536:  # an entry longer than the window: read it all
                fh.seek(0)
                tail = fh.read().rstrip(b"\n")
            newest = json.loads(tail.rsplit(b"\n", 1)[-1])
        recorded = self._meta("audit_head") or GENESIS
        mac = hmac.new(self.keyring.audit_key, str(newest["hash"]).encode(), "sm3").hexdigest()
        if newest["hash"] != recorded and newest.get("prev") == recorded and hmac.compare_digest(mac, newest["mac"]):
            self._set_meta("audit_head", str(newest["hash"]))
            recorded = str(newest["hash"])
        if newest["hash"] != recorded:
            raise AuditError(
                f"{self.audit_path}: its newest entry is not the one vault {self.path} recorded; "
                "the log was truncated or replaced — run verify_audit and investigate before revealing"
            )
        return recorded, int(str(newest["seq"]))

    def verify_audit(self) -> AuditReport:
        """`verify_audit` of this vault's log with its keyring and its record of the newest entry."""
        if not self.audit_path.exists():
            if self._meta("audit_head") is not None:
                raise AuditError(f"{self.audit_path} is missing but vault {self.path} has audit entries")
            return AuditReport(0, GENESIS)
        return verify_audit(self.audit_path, keyring=self.keyring, head=self._meta("audit_head") or GENESIS)

    # -- reveal --------------------------------------------------------------------------

    def _fetch(self, tokens: list[str]) -> dict[str, tuple[str, int, bytes]]:
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (token TEXT PRIMARY KEY)")
        self._db.execute("DELETE FROM wanted")
        self._db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((t,) for t in tokens))
        rows = self._db.execute(
            "SELECT e.token, e.field, e.version, e.sealed FROM entries e JOIN wanted w ON e.token = w.token"
        ).fetchall()
        return {t: (f, v, s) for t, f, v, s in rows}

    def _open_sealed(self, field: str, version: int, tokens: list[str], sealed: list[bytes]) -> list[str]:
        """Verify every entry's MAC, decrypt, and re-tokenize: any mismatch raises before a value is returned."""
        keys = self.keyring.keys(version)
        n = len(tokens)
        ivs = np.frombuffer(b"".join(s[:16] for s in sealed), np.uint8).reshape(n, 16)
        tags = np.frombuffer(b"".join(s[-32:] for s in sealed), np.uint8).reshape(n, 32)
        ct = np.frombuffer(b"".join(s[16:-32] for s in sealed), np.uint8)
        ct_offsets = np.zeros(n + 1, np.int64)
        np.cumsum([len(s) - 48 for s in sealed], out=ct_offsets[1:])
        bad = (self._tags(keys.vault_mac, field, tokens, ivs, ct, ct_offsets) != tags).any(axis=1)
        if bad.any():
            raise VaultError(
                f"vault {self.path}: entry {tokens[int(np.argmax(bad))]} fails its HMAC-SM3 check "
                f"({int(bad.sum())} entries in all); the vault was altered or the key is wrong"
            )
        plain = _ctr_xor(keys.vault_enc, ivs, ct, ct_offsets)
        values = pa.LargeStringArray.from_buffers(n, pa.py_buffer(ct_offsets), pa.py_buffer(plain))
        again = Tokenizer(self.keyring, version=version).tokenize(field, values).to_pylist()
        if again != tokens:
            raise VaultError(f"vault {self.path}: a revealed value does not re-tokenize to its token")
        return values.to_pylist()

    def reveal(
        self, field: str, tokens: Sequence[str | None] | pa.Array | pa.ChunkedArray, *, reason: str, actor: str
    ) -> pa.Array:
        """The raw values behind `tokens` (nulls stay null), after writing the audit entry.

        Raises VaultError if a token is not in the vault, belongs to another field, or its
        entry fails authentication; nothing is returned then, but the attempt stays audited.
        """
        arr = tokens if isinstance(tokens, pa.Array | pa.ChunkedArray) else pa.array(tokens, pa.string())
        wanted = sorted(t for t in pc.unique(arr.cast(pa.string())).to_pylist() if t is not None)
        self._audit(
            "reveal",
            actor=actor,
            reason=reason,
            fields={field: int(len(arr) - arr.null_count)},
            subject="tokens sm3:" + sm3_hex("\n".join(sorted(wanted)).encode()),
        )
        found = self._fetch(wanted)
        missing = [t for t in wanted if t not in found]
        if missing:
            raise VaultError(f"{len(missing)} tokens are not in vault {self.path} (first: {missing[0]})")
        by_version: dict[int, list[str]] = {}
        for t in wanted:
            f, v, _ = found[t]
            if f != field:
                raise VaultError(f"token {t} belongs to field {f!r}, not {field!r}")
            by_version.setdefault(v, []).append(t)
        plain: dict[str, str] = {}
        for v, ts in by_version.items():
            plain.update(zip(ts, self._open_sealed(field, v, ts, [found[t][2] for t in ts]), strict=True))
        return pa.array([None if t is None else plain[t] for t in arr.to_pylist()], pa.string())

    def reveal_fpe(
        self,
        kind: str,
        tokens: Sequence[str | None] | pa.Array,
        *,
        reason: str,
        actor: str,
        version: int | None = None,
    ) -> pa.Array:
        """Decrypt format-preserving tokens (`kind` "resident_id" or "bank_card"), audited like `reveal`."""
        arr = tokens if isinstance(tokens, pa.Array) else pa.array(tokens, pa.string())
        fpe = FormatPreservingTokenizer(self.keyring, version=version)
        decrypt = {"resident_id": fpe.decrypt_resident_ids, "bank_card": fpe.decrypt_bank_cards}.get(kind)
        if decrypt is None:
            raise ValueError(f"unknown format-preserving token kind {kind!r}; use resident_id or bank_card")
        wanted = sorted(t for t in pc.unique(arr).to_pylist() if t)
        self._audit(
            "reveal_fpe",
            actor=actor,
            reason=reason,
            fields={kind: int(len(arr) - arr.null_count)},
            subject=f"key version {fpe.version}, tokens sm3:" + sm3_hex("\n".join(wanted).encode()),
        )
        return decrypt(arr)

    # -- rotation ------------------------------------------------------------------------

    def rotate(self, *, actor: str, reason: str, to_version: int | None = None, chunk: int = 200_000) -> pa.Table:
        """Re-seal every entry under a new key version and return the `field, old_token, new_token` map.

        Without `to_version` the keyring gets a new version first; pass the version a crashed
        rotation created to finish it (entries already re-sealed are skipped). Rotation
        decrypts every value, so it is audited like a reveal. The old entries stay until
        `purge(old_version)`, so tokens not yet rewritten still reveal meanwhile.
        """
        new = max(self.keyring.versions) + 1 if to_version is None else to_version
        counts = dict(self._db.execute("SELECT field, count(*) FROM entries WHERE version != ? GROUP BY field", (new,)))
        self._audit("rotate", actor=actor, reason=reason, fields=counts, subject=f"re-seal under key version {new}")
        if to_version is None:
            self.keyring.rotate()
        self.keyring.keys(new)  # a version the keyring lacks fails here, before anything is re-sealed
        maps: list[pa.Table] = []
        for old in [v for v in self.versions() if v != new]:
            fields = self._db.execute("SELECT DISTINCT field FROM entries WHERE version = ?", (old,)).fetchall()
            for (field,) in fields:
                after = ""
                while True:
                    rows = self._db.execute(
                        "SELECT token, sealed FROM entries WHERE version = ? AND field = ? AND token > ? "
                        "ORDER BY token LIMIT ?",
                        (old, field, after, chunk),
                    ).fetchall()
                    if not rows:
                        break
                    tokens = [r[0] for r in rows]
                    values = self._open_sealed(field, old, tokens, [r[1] for r in rows])
                    new_tokens = self.put(field, pa.array(values, pa.string()), version=new)
                    maps.append(
                        pa.table({"field": [field] * len(tokens), "old_token": tokens, "new_token": new_tokens})
                    )
                    after = tokens[-1]
        schema = pa.schema([("field", pa.string()), ("old_token", pa.string()), ("new_token", pa.string())])
        return pa.concat_tables([m.cast(schema) for m in maps]) if maps else schema.empty_table()

    def versions(self) -> list[int]:
        """Key versions that still have entries."""
        return [v for (v,) in self._db.execute("SELECT DISTINCT version FROM entries ORDER BY version")]

    def purge(self, version: int) -> int:
        """Delete the entries of a key version once its tokens were rotated away; returns how many."""
        if version == self.keyring.current:
            raise ValueError(f"key version {version} is current; rotate before purging it")
        with self._transaction():
            n = self._db.execute("DELETE FROM entries WHERE version = ?", (version,)).rowcount
            self._db.execute("DELETE FROM meta WHERE key = ?", (f"check:{version}",))
        return n

    def count(self) -> int:
        """Number of entries (all versions)."""
        return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])
