"""Deterministic HMAC-SM3 tokens for personal data, applied at ingest before anything is stored.

The same value under the same key always gives the same token, so joins, entity
resolution and cross-dataset matching keep working on tokens while the raw value
never reaches disk. A token is `tk<version>.` and the first 128 bits of
HMAC-SM3(token key, field NUL value) in hex; the version names the key that made it,
so a rotation can tell old tokens from new. Whole Arrow columns go through a compiled
kernel on every core (see `_sm3`), which is what makes ten million IDs a matter of seconds.
"""

from __future__ import annotations

import hmac
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tianluo.protect import _sm3
from tianluo.protect.keys import DataKeys, Keyring, WrongKeyError

#: Hex digits of HMAC-SM3 kept in a token: 128 bits, collision-free for any realistic population.
TOKEN_HEX = 32
_TOKEN_RE = re.compile(r"tk(\d+)\.[0-9a-f]{32}")
#: Threads hashing one batch: the cores this process may use.
_THREADS = len(os.sched_getaffinity(0))


def token_prefix(version: int) -> str:
    """`tk<version>.`: the part of a token that names the key version."""
    return f"tk{version}."


def token_version(token: str) -> int:
    """Key version of a deterministic token; ValueError if the string is not one."""
    m = _TOKEN_RE.fullmatch(token)
    if not m:
        raise ValueError(f"{token!r} is not a Tianluo token (tk<version>.<32 hex digits>)")
    return int(m.group(1))


def string_buffers(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, int64 offsets, present) of a string (or binary) column without copying values into Python.

    `present` is False for nulls and empty strings: neither has a token, because one shared
    token for "no value" would link every party that lacks a phone number.
    """
    binary = pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)
    target = pa.large_binary() if binary else pa.large_string()
    if isinstance(values, pa.ChunkedArray):
        chunks = [c.cast(target) for c in values.chunks]
        arr = pa.concat_arrays(chunks) if chunks else pa.array([], target)
    else:
        arr = values.cast(target)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    present = np.diff(offsets) > 0
    if arr.null_count:
        present &= pc.is_valid(arr).to_numpy(zero_copy_only=False)
    return data, offsets, present


def fixed_tokens(present: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (one `width`-byte slot per present row, empty for the rest) and the byte buffer to fill."""
    offsets = np.zeros(len(present) + 1, dtype=np.int64)
    np.cumsum(present * width, out=offsets[1:])
    return offsets, np.empty(int(offsets[-1]), dtype=np.uint8)


def strings_from_buffers(offsets: np.ndarray, data: np.ndarray, present: np.ndarray) -> pa.Array:
    """An Arrow string array (null where not `present`) from offsets and bytes built by a kernel."""
    n = len(present)
    validity = None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data), validity)
    big = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity)
    return big.cast(pa.string())


class ColumnTokenizer(Protocol):
    """What ingest needs: `Tokenizer` (tokens only) and `Vault` (tokens that can be revealed) both fit."""

    def tokenize(self, field: str, values: pa.Array | pa.ChunkedArray) -> pa.Array: ...

    @property
    def key_check_value(self) -> str: ...

    def check(self, recorded: str) -> None: ...


class BatchHmacSm3:
    """HMAC-SM3 with the key's inner and outer pads absorbed once, for the batch kernels."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = _sm3.state_bytes(_sm3.sm3_state(np.frombuffer(key, np.uint8), _sm3.SM3_IV))
        padded = np.zeros(64, np.uint8)
        padded[: len(key)] = np.frombuffer(key, np.uint8)
        self.istate = _sm3.pad_state(padded ^ np.uint8(0x36))
        self.ostate = _sm3.pad_state(padded ^ np.uint8(0x5C))

    def into(
        self,
        prefix: bytes,
        data: np.ndarray,
        offsets: np.ndarray,
        valid: np.ndarray,
        head: bytes,
        nhex: int,
        out_offsets: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """Run `_sm3.hmac_into` over all rows, one slice per core in threads for large batches."""
        n = len(valid)
        slices = _THREADS if n >= 100_000 else 1
        bounds = [n * i // slices for i in range(slices + 1)]
        args = (self.istate, self.ostate, np.frombuffer(prefix, np.uint8), data, offsets, valid)
        tail = (np.frombuffer(head, np.uint8), nhex, out_offsets, out)
        if slices == 1:
            _sm3.hmac_into(*args, 0, n, *tail)
            return
        with ThreadPoolExecutor(slices) as pool:
            list(pool.map(lambda i: _sm3.hmac_into(*args, bounds[i], bounds[i + 1], *tail), range(slices)))

    def digests(self, prefix: bytes, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(n, 32) HMAC-SM3 digests of `prefix || message_i` for the messages given by `offsets` into `data`."""
        n = len(offsets) - 1
        out = np.empty((n, 32), np.uint8)
        every, slots = np.ones(n, np.bool_), np.arange(n + 1, dtype=np.int64) * 32
        self.into(prefix, data, offsets, every, b"", 0, slots, out.ravel())
        return out


class Tokenizer:
    """Keyed, deterministic tokenization of one kind of value (name, id_number, phone…).

    Built from the raw master key (version 1, as ingest has always done) or from a `Keyring`,
    in which case it tokenizes with the keyring's current version unless told otherwise.
    The field name is mixed into the MAC so that equal strings in different fields
    (a phone number that is also an account number) do not give linkable tokens.
    """

    def __init__(self, key: bytes | Keyring, *, version: int | None = None) -> None:
        ring = key if isinstance(key, Keyring) else Keyring.from_master(key)
        self.keys: DataKeys = ring.keys(version)
        self.version = self.keys.version
        self.prefix = token_prefix(self.version)
        self._mac = BatchHmacSm3(self.keys.token)

    @property
    def key_check_value(self) -> str:
        """`<version>:<16 hex>`: record it with tokenized data; `check` refuses a different key later."""
        return f"{self.version}:{self.keys.check_value}"

    def check(self, recorded: str) -> None:
        """Raise WrongKeyError if `recorded` (a stored `key_check_value`) is not this tokenizer's key."""
        if recorded != self.key_check_value:
            raise WrongKeyError(
                f"data was tokenized with key {recorded}, this tokenizer has {self.key_check_value}: "
                "its tokens would not join; use the master key (and keyring version) the data was made with"
            )

    def token(self, field: str, value: str) -> str:
        """One token through OpenSSL's HMAC-SM3: the reference the batch kernel is tested against."""
        mac = hmac.new(self.keys.token, field.encode() + b"\x00" + value.encode(), "sm3")
        return self.prefix + mac.hexdigest()[:TOKEN_HEX]

    def tokenize(self, field: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Tokenize an Arrow string column; nulls and empty strings stay null."""
        data, offsets, present = string_buffers(values)
        head = self.prefix.encode()
        out_offsets, out = fixed_tokens(present, len(head) + TOKEN_HEX)
        self._mac.into(field.encode() + b"\x00", data, offsets, present, head, TOKEN_HEX, out_offsets, out)
        return strings_from_buffers(out_offsets, out, present)
