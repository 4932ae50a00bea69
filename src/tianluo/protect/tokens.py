"""Deterministic HMAC-SM3 tokens for personal data, applied at ingest before anything is stored.

The same value under the same key always gives the same token, so joins, entity
resolution and cross-dataset matching keep working on tokens while the raw value
never reaches disk. This is the foundation's share of the privacy stage: the
reversible vault, format-preserving tokens and key rotation build on top of it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pyarrow as pa

#: Environment variable holding the master key (hex, 32 bytes) or a path to a key file.
KEY_ENV = "TIANLUO_MASTER_KEY"
#: Key file used when the environment variable is not set.
DEFAULT_KEY_FILE = Path.home() / ".config" / "tianluo" / "master.key"
#: Token prefix: scheme and key version, so a later rotation can tell tokens apart.
TOKEN_PREFIX = "tk1."


class MasterKeyError(RuntimeError):
    """The master key is missing or malformed; the message says where it was looked for."""


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise MasterKeyError(f"master key in {where} is not hex: {exc}") from None
    if len(key) < 16:
        raise MasterKeyError(f"master key in {where} has {len(key)} bytes; at least 16 are required")
    return key


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


class Tokenizer:
    """Keyed, deterministic tokenization of one kind of value (name, id_number, phone…).

    The field name is mixed into the MAC so that equal strings in different fields
    (a phone number that is also an account number) do not give linkable tokens.
    """

    def __init__(self, key: bytes) -> None:
        # Derive a tokenization subkey so the master key itself never MACs data.
        self._key = hmac.new(key, b"tianluo/deterministic-token/v1", "sm3").digest()

    def token(self, field: str, value: str) -> str:
        mac = hmac.new(self._key, field.encode() + b"\x00" + value.encode(), "sm3")
        return TOKEN_PREFIX + mac.hexdigest()[:32]

    def tokenize(self, field: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Tokenize an Arrow string column; nulls and empty strings stay null."""
        out = [None if v is None or v == "" else self.token(field, v) for v in values.to_pylist()]
        return pa.array(out, type=pa.string())


def sm3_hex(data: bytes) -> str:
    """SM3 digest (GB/T 32905-2016) via OpenSSL; used for file fingerprints and audit chains."""
    return hashlib.new("sm3", data).hexdigest()
