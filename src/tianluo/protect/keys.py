"""Key hierarchy: a master key held outside the repo and the data, and versioned data keys in a keyring.

The master key (from `$TIANLUO_MASTER_KEY` or a key file) never touches data: it derives a
key-encryption key that wraps one random secret per key version, and each version's secret
derives the keys that do the work (token MAC, vault encryption and MAC, FPE). Rotating the
master key re-wraps the secrets and changes no token; rotating the data keys adds a version,
and `tianluo.protect.rotate` re-tokenizes with it. Version 1 is derived from the master key
itself, exactly as the first tokenizer did, so tokens made before a keyring existed stay valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: Environment variable holding the master key (hex, ≥ 16 bytes) or a path to a key file.
KEY_ENV = "TIANLUO_MASTER_KEY"
#: Key file used when the environment variable is not set.
DEFAULT_KEY_FILE = Path.home() / ".config" / "tianluo" / "master.key"
#: Environment variable naming the keyring file.
KEYRING_ENV = "TIANLUO_KEYRING"
#: Keyring used when the environment variable is not set.
DEFAULT_KEYRING_FILE = Path.home() / ".config" / "tianluo" / "keyring.json"
KEYRING_FORMAT = 1
#: Slot number under which the audit-log secret is wrapped (data-key versions start at 1).
AUDIT_SLOT = 0


class MasterKeyError(RuntimeError):
    """The master key is missing or malformed; the message says where it was looked for."""


class WrongKeyError(MasterKeyError):
    """The master key is well formed but is not the one the keyring, vault or dataset was made with."""


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise MasterKeyError(f"master key in {where} is not hex: {exc}") from None
    if len(key) < 16:
        raise MasterKeyError(f"master key in {where} has {len(key)} bytes; at least 16 are required")
    return key


def key_from(value: str) -> bytes:
    """A master key given the way `$TIANLUO_MASTER_KEY` gives it: 64 hex digits or a key file path.

    A server snapshots the variable at start and calls this when it needs the key.
    """
    if Path(value).is_file():
        return _parse_key(Path(value).read_text(), value)
    return _parse_key(value, f"${KEY_ENV}")


def load_key(key_file: Path | None = None, *, create: bool = False) -> bytes:
    """Find the master key: explicit file, then $TIANLUO_MASTER_KEY, then the default key file.

    With `create=True` a missing default key file is generated (mode 0600) — used by the
    embedded demo so that a fresh machine works; a team deployment supplies its own key.
    """
    if key_file is not None:
        if not Path(key_file).is_file():
            raise MasterKeyError(f"key file {key_file} does not exist")
        return _parse_key(Path(key_file).read_text(), str(key_file))
    env = os.environ.get(KEY_ENV)
    if env:
        if Path(env).is_file():
            return _parse_key(Path(env).read_text(), env)
        return _parse_key(env, f"${KEY_ENV}")
    if DEFAULT_KEY_FILE.is_file():
        return _parse_key(DEFAULT_KEY_FILE.read_text(), str(DEFAULT_KEY_FILE))
    if not create:
        raise MasterKeyError(f"no master key: set ${KEY_ENV} (hex or a key file path) or create {DEFAULT_KEY_FILE}")
    DEFAULT_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(DEFAULT_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return _parse_key(DEFAULT_KEY_FILE.read_text(), str(DEFAULT_KEY_FILE))


def derive(secret: bytes, label: str) -> bytes:
    """A 32-byte subkey: HMAC-SM3(secret, label); distinct labels give independent keys."""
    return hmac.new(secret, label.encode(), "sm3").digest()


def key_check_value(master: bytes) -> str:
    """16 hex digits that identify a master key without revealing it (compare, never derive from)."""
    return derive(master, "tianluo/key-check-value").hex()[:16]


def sm4_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """SM4-CTR (GB/T 32907 block cipher, counter mode); encryption and decryption are the same."""
    enc = Cipher(algorithms.SM4(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


@dataclass(frozen=True)
class DataKeys:
    """The working keys of one key version, all derived from that version's secret."""

    version: int
    #: HMAC-SM3 key of deterministic tokens (`tk<version>.`).
    token: bytes
    #: SM4 key encrypting vault entries (CTR mode).
    vault_enc: bytes
    #: HMAC-SM3 key authenticating vault entries and keying the audit chain.
    vault_mac: bytes
    #: SM4 key of format-preserving (FF1-SM4) tokens.
    fpe: bytes

    @classmethod
    def from_secret(cls, version: int, secret: bytes) -> DataKeys:
        return cls(
            version=version,
            # The label of the first tokenizer, so version-1 tokens are unchanged.
            token=derive(secret, "tianluo/deterministic-token/v1"),
            vault_enc=derive(secret, "tianluo/vault/sm4-ctr")[:16],
            vault_mac=derive(secret, "tianluo/vault/hmac-sm3"),
            fpe=derive(secret, "tianluo/fpe/ff1-sm4")[:16],
        )

    @property
    def check_value(self) -> str:
        """16 hex digits identifying this version's keys: a dataset records it to refuse a different key."""
        return derive(self.token, "tianluo/key-check-value").hex()[:16]


def _wrap_keys(master: bytes) -> tuple[bytes, bytes]:
    return derive(master, "tianluo/keyring/wrap-sm4")[:16], derive(master, "tianluo/keyring/wrap-mac")


def _wrap(master: bytes, version: int, secret: bytes) -> str:
    """Encrypt-then-MAC a version secret: SM4-CTR under one derived key, HMAC-SM3 under another.

    The version number is inside the MAC, so a wrapped secret cannot be moved to another version.
    """
    enc_key, mac_key = _wrap_keys(master)
    iv = os.urandom(16)
    ct = sm4_ctr(enc_key, iv, secret)
    tag = hmac.new(mac_key, b"tianluo/keyring/v1" + version.to_bytes(4, "big") + iv + ct, "sm3").digest()
    return base64.b64encode(iv + ct + tag).decode()


def _unwrap(master: bytes, version: int, blob: str, where: str) -> bytes:
    raw = base64.b64decode(blob)
    iv, ct, tag = raw[:16], raw[16:-32], raw[-32:]
    enc_key, mac_key = _wrap_keys(master)
    want = hmac.new(mac_key, b"tianluo/keyring/v1" + version.to_bytes(4, "big") + iv + ct, "sm3").digest()
    if not hmac.compare_digest(tag, want):
        raise WrongKeyError(f"{where}: key version {version} fails its MAC; the keyring entry was altered")
    return sm4_ctr(enc_key, iv, ct)


class Keyring:
    """Versioned data keys under one master key, optionally persisted as a JSON file of wrapped secrets.

    The file holds no usable key material without the master key, so it may sit beside a
    vault or in a config directory (never inside a dataset, whose files are shared).
    """

    def __init__(
        self,
        master: bytes,
        secrets_by_version: dict[int, bytes],
        current: int,
        path: Path | None,
        audit_secret: bytes | None = None,
    ) -> None:
        self._master = master
        self._secrets = dict(secrets_by_version)
        self._keys = {v: DataKeys.from_secret(v, s) for v, s in self._secrets.items()}
        # The audit log's MAC key outlives data-key versions, so retiring one never
        # leaves old audit entries unverifiable.
        self._audit_secret = audit_secret if audit_secret is not None else derive(master, "tianluo/audit/v1")
        self.current = current
        self.path = path

    @classmethod
    def from_master(cls, master: bytes) -> Keyring:
        """An in-memory keyring with only version 1 (derived from the master key); nothing is written."""
        return cls(master, {1: master}, 1, None)

    @classmethod
    def create(cls, path: Path | str, master: bytes) -> Keyring:
        """Start a keyring file holding version 1; refuses to overwrite an existing one."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"keyring {path} already exists; open it with Keyring.open")
        ring = cls(master, {1: master}, 1, path)
        ring.save()
        return ring

    @classmethod
    def open(cls, path: Path | str, master: bytes, *, create: bool = False) -> Keyring:
        """Load a keyring file and unwrap its secrets; a different master key raises WrongKeyError."""
        path = Path(path)
        if not path.exists():
            if create:
                return cls.create(path, master)
            raise MasterKeyError(f"keyring {path} does not exist; create it with Keyring.create or `create=True`")
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise MasterKeyError(f"keyring {path} is not valid JSON: {exc}") from None
        if doc.get("format") != KEYRING_FORMAT:
            raise MasterKeyError(f"keyring {path} has format {doc.get('format')}; this version reads {KEYRING_FORMAT}")
        if doc["key_check_value"] != key_check_value(master):
            raise WrongKeyError(
                f"the master key does not match keyring {path} (its key check value is {doc['key_check_value']}, "
                f"the key given has {key_check_value(master)}); use the master key the keyring was made with"
            )
        found = {int(v): _unwrap(master, int(v), e["wrapped"], str(path)) for v, e in doc["versions"].items()}
        audit = _unwrap(master, AUDIT_SLOT, doc["audit"], str(path))
        return cls(master, found, int(doc["current"]), path, audit)

    @property
    def key_check_value(self) -> str:
        """Check value of the master key: stored beside data made with it to catch a wrong key early."""
        return key_check_value(self._master)

    @property
    def audit_key(self) -> bytes:
        """HMAC-SM3 key of audit-log entries (one per keyring, kept across rotations)."""
        return derive(self._audit_secret, "tianluo/audit/hmac-sm3")

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    def keys(self, version: int | None = None) -> DataKeys:
        """Data keys of `version` (default: the current one)."""
        v = self.current if version is None else version
        if v not in self._keys:
            where = self.path or "the in-memory keyring"
            raise MasterKeyError(f"key version {v} is not in {where} (it has {self.versions}); was it retired?")
        return self._keys[v]

    def rotate(self) -> int:
        """Add a new key version with a random secret and make it current; returns its number."""
        v = max(self._keys) + 1
        self._secrets[v] = secrets.token_bytes(32)
        self._keys[v] = DataKeys.from_secret(v, self._secrets[v])
        self.current = v
        self.save()
        return v

    def retire(self, version: int) -> None:
        """Forget a key version once nothing made with it remains (after rotation and re-tokenizing)."""
        if version == self.current:
            raise ValueError(f"key version {version} is current; rotate before retiring it")
        self.keys(version)
        del self._secrets[version], self._keys[version]
        self.save()

    def rewrap(self, new_master: bytes) -> None:
        """Master-key rotation: wrap every version secret under `new_master`; no token changes."""
        self._master = new_master
        self.save()

    def save(self) -> None:
        """Write the keyring (wrapped secrets only) atomically; a no-op for an in-memory keyring."""
        if self.path is None:
            return
        doc: dict[str, Any] = {
            "format": KEYRING_FORMAT,
            "key_check_value": self.key_check_value,
            "current": self.current,
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": {str(v): {"wrapped": _wrap(self._master, v, s)} for v, s in sorted(self._secrets.items())},
            "audit": _wrap(self._master, AUDIT_SLOT, self._audit_secret),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def load_keyring(path: Path | None = None, master: bytes | None = None, *, create: bool = False) -> Keyring:
    """The keyring at `path`, `$TIANLUO_KEYRING` or the default file, unlocked with the master key."""
    master = master if master is not None else load_key()
    env = os.environ.get(KEYRING_ENV)
    where = Path(path) if path is not None else Path(env) if env else DEFAULT_KEYRING_FILE
    return Keyring.open(where, master, create=create)


def sm3_hex(data: bytes) -> str:
    """SM3 digest (GB/T 32905-2016) via OpenSSL; used for file fingerprints and audit chains."""
    return hashlib.new("sm3", data).hexdigest()
