"""Format-preserving tokens: FF1 (NIST SP 800-38G) keyed with SM4, for systems that need an ID's shape.

A resident ID token is 18 characters with a valid GB 11643 (ISO 7064 MOD 11-2) check
character; a bank card token keeps its length and issuer BIN and passes Luhn. Both are
keyed, deterministic and reversible with the key (reveal them through `Vault.reveal_fpe`,
which audits). The block cipher is SM4: **FF1-SM4 is not a published Chinese standard**
(no GB/T or GM/T FPE standard exists, so it has no official test vectors); the FF1
construction here is proven by running it with AES against NIST's FF1 samples.

Tokens must never equal their input, which a bare permutation cannot promise (it has fixed
points: about one card in 10^9). So a token is E(E⁻¹(x) + 1): the FF1 permutation E conjugated
with "add one", a single cycle through the whole domain that has no fixed point at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tianluo.protect.keys import Keyring
from tianluo.protect.tokens import fixed_tokens, string_buffers, strings_from_buffers
from tianluo.reference.china_ids import RESIDENT_ID_CHECK, RESIDENT_ID_WEIGHTS, luhn_check_digits

#: Numerals of radix up to 36, as NIST SP 800-38G's samples write them.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
#: NIST SP 800-38G Rev. 1 draft: FF1 domains must hold at least a million values.
MIN_DOMAIN = 1_000_000
#: Issuer digits a card token keeps: banks and card schemes are analysis features, not secrets
#: (PCI DSS lets the first six digits be shown).
CARD_BIN_DIGITS = 6

BlockCipher = Callable[[bytes], bytes]


def ecb(algorithm: algorithms.BlockCipherAlgorithm) -> BlockCipher:
    """Encrypt a run of 16-byte blocks independently (ECB) with one reused OpenSSL context."""
    enc = Cipher(algorithm, modes.ECB()).encryptor()
    return enc.update


class FF1:
    """FF1 over a 128-bit block cipher, vectorised: every row of a numeral matrix in one pass per round.

    Rows are numeral strings of one length `n` (values 0…radix-1); the tweak is shared bytes
    or one row of bytes per string. Each of the ten Feistel rounds is one batched block
    encryption, so the cost per value is ten block encryptions plus integer arithmetic.
    """

    def __init__(self, cipher: BlockCipher, radix: int = 10) -> None:
        if not 2 <= radix <= len(ALPHABET):
            raise ValueError(f"radix must be 2…{len(ALPHABET)}, got {radix}")
        self._ciph = cipher
        self.radix = radix

    def _blocks(self, data: np.ndarray) -> np.ndarray:
        """Encrypt each 16-byte row of an (m, 16) matrix."""
        return np.frombuffer(self._ciph(np.ascontiguousarray(data).tobytes()), np.uint8).reshape(-1, 16)

    def _check(self, n: int) -> tuple[int, int, int, int]:
        u, v = n // 2, n - n // 2
        if self.radix**n < MIN_DOMAIN:
            raise ValueError(f"{n} numerals of radix {self.radix} are fewer than {MIN_DOMAIN:,} values; FF1 needs more")
        if self.radix**v >= 2**56:
            raise ValueError(f"{n} numerals of radix {self.radix} exceed this implementation's 56-bit halves")
        b = -(-(self.radix**v - 1).bit_length() // 8)
        d = 4 * -(-b // 4) + 4
        return u, v, b, d

    def _num(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[0], np.uint64)
        for j in range(x.shape[1]):
            out = out * np.uint64(self.radix) + x[:, j].astype(np.uint64)
        return out

    def _str(self, c: np.ndarray, m: int) -> np.ndarray:
        out = np.empty((c.shape[0], m), np.uint8)
        for j in range(m - 1, -1, -1):
            c, r = np.divmod(c, np.uint64(self.radix))
            out[:, j] = r
        return out

    def _prf_prefix(self, n: int, tweak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CBC-MAC state after P and the whole blocks of Q before [i] || NUM(B), and Q's rest.

        Those blocks hold only the tweak, the same in all ten rounds, so they are encrypted once.
        """
        u, _, b, _ = self._check(n)
        rows, t = tweak.shape
        p = bytes([1, 2, 1]) + self.radix.to_bytes(3, "big") + bytes([10, u % 256]) + n.to_bytes(4, "big")
        p += t.to_bytes(4, "big")
        pad = (-t - b - 1) % 16
        head = np.concatenate([tweak, np.zeros((rows, pad), np.uint8)], axis=1)  # Q without [i] || NUM(B)
        y = np.broadcast_to(self._blocks(np.frombuffer(p, np.uint8)[None, :]), (rows, 16))
        full = (head.shape[1] // 16) * 16
        for k in range(0, full, 16):
            y = self._blocks(y ^ head[:, k : k + 16])
        return np.ascontiguousarray(y), head[:, full:]

    def _feistel_y(
        self, prf: tuple[np.ndarray, np.ndarray], i: int, num: np.ndarray, b: int, d: int, m: int
    ) -> np.ndarray:
        """y mod radix^m for round i: R = PRF(P || Q), S = R || CIPH(R ⊕ 1) …, y = NUM(S[:d])."""
        y0, tail = prf
        rows = num.shape[0]
        last = np.empty((rows, 16), np.uint8)
        tl = tail.shape[1]
        last[:, :tl] = tail
        last[:, tl] = i
        for k in range(b):
            last[:, tl + 1 + k] = (num >> np.uint64(8 * (b - 1 - k))) & np.uint64(0xFF)
        r = self._blocks(y0 ^ last)
        s = [r]
        for j in range(1, -(-d // 16)):
            s.append(self._blocks(r ^ np.frombuffer(j.to_bytes(16, "big"), np.uint8)))
        sb = np.concatenate(s, axis=1)[:, :d]
        mod = np.uint64(self.radix**m)
        y = np.zeros(rows, np.uint64)
        for k in range(d):
            y = (y * np.uint64(256) + sb[:, k].astype(np.uint64)) % mod
        return y

    def _tweaks(self, rows: int, tweak: bytes | np.ndarray) -> np.ndarray:
        if isinstance(tweak, bytes | bytearray):
            return np.broadcast_to(np.frombuffer(bytes(tweak), np.uint8), (rows, len(tweak)))
        return np.asarray(tweak, np.uint8)

    def encrypt(self, x: np.ndarray, tweak: bytes | np.ndarray = b"") -> np.ndarray:
        """FF1.Encrypt of every row of `x` (an (rows, n) matrix of numerals), SP 800-38G Algorithm 7."""
        rows, n = x.shape
        u, v, b, d = self._check(n)
        prf = self._prf_prefix(n, self._tweaks(rows, tweak))
        a, bb = self._num(x[:, :u]), self._num(x[:, u:])
        for i in range(10):
            m = u if i % 2 == 0 else v
            c = (a + self._feistel_y(prf, i, bb, b, d, m)) % np.uint64(self.radix**m)
            a, bb = bb, c
        return np.concatenate([self._str(a, u), self._str(bb, v)], axis=1)

    def decrypt(self, x: np.ndarray, tweak: bytes | np.ndarray = b"") -> np.ndarray:
        """FF1.Decrypt of every row of `x`, SP 800-38G Algorithm 8."""
        rows, n = x.shape
        u, v, b, d = self._check(n)
        prf = self._prf_prefix(n, self._tweaks(rows, tweak))
        a, bb = self._num(x[:, :u]), self._num(x[:, u:])
        for i in range(9, -1, -1):
            m = u if i % 2 == 0 else v
            mod = np.uint64(self.radix**m)
            c = (bb + mod - self._feistel_y(prf, i, a, b, d, m)) % mod
            bb, a = a, c
        return np.concatenate([self._str(a, u), self._str(bb, v)], axis=1)


def _step(x: np.ndarray, radix: int, delta: int) -> np.ndarray:
    """Add ±1 to each row's numeral string, modulo radix^n (carry or borrow through every column)."""
    out = x.astype(np.int16)
    carry = np.full(x.shape[0], delta, np.int16)
    for j in range(x.shape[1] - 1, -1, -1):
        s = out[:, j] + carry
        carry = np.where(s >= radix, 1, np.where(s < 0, -1, 0)).astype(np.int16)
        out[:, j] = s - carry * radix
    return out.astype(np.uint8)


def _digit_matrix(values: pa.Array | pa.ChunkedArray, width: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, width) ASCII matrix of the present values, and the present mask; errors name the row."""
    data, offsets, present = string_buffers(values)
    lengths = np.diff(offsets)
    bad = present & (lengths != width)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"row {row}: {what} must be {width} characters, got {int(lengths[row])}")
    starts = offsets[:-1][present]
    mat = data[starts[:, None] + np.arange(width)[None, :]] if len(starts) else np.zeros((0, width), np.uint8)
    return mat, present


def _resident_check(body: np.ndarray) -> np.ndarray:
    """ASCII GB 11643 check character of each (rows, 17) digit-value row."""
    total = body.astype(np.int64) @ np.array(RESIDENT_ID_WEIGHTS, np.int64)
    return np.frombuffer(RESIDENT_ID_CHECK.encode(), np.uint8)[total % 11]


class FormatPreservingTokenizer:
    """Keyed, deterministic, reversible tokens in the shape of resident IDs and bank card numbers.

    Unlike `tk<v>.` tokens these carry no key version (there is no room for one); record
    `version` beside the column. The reverse direction is `decrypt_*`; people reveal values
    through `Vault.reveal_fpe`, which writes the audit entry.
    """

    def __init__(self, key: bytes | Keyring, *, version: int | None = None) -> None:
        ring = key if isinstance(key, Keyring) else Keyring.from_master(key)
        keys = ring.keys(version)
        self.version = keys.version
        self._ff1 = FF1(ecb(algorithms.SM4(keys.fpe)), radix=10)

    def _permute(self, body: np.ndarray, tweak: bytes | np.ndarray, forward: bool) -> np.ndarray:
        """E(E⁻¹(x) + 1) forward, E(E⁻¹(x) − 1) back: FF1 conjugated into a fixed-point-free cycle."""
        inner = self._ff1.decrypt(body, tweak)
        return self._ff1.encrypt(_step(inner, 10, 1 if forward else -1), tweak)

    def _resident(self, values: pa.Array | pa.ChunkedArray, forward: bool) -> pa.Array:
        mat, present = _digit_matrix(values, 18, "a resident ID")
        mat = np.where(mat == ord("x"), np.uint8(ord("X")), mat)
        body = mat[:, :17] - np.uint8(48)
        ok = (body <= 9).all(axis=1) & (_resident_check(np.where(body <= 9, body, 0)) == mat[:, 17])
        if not ok.all():
            row = int(np.flatnonzero(present)[np.argmin(ok)])
            raise ValueError(
                f"row {row}: not a resident ID with a valid check character (17 digits + 0-9/X); "
                "filter with tianluo.reference.china_ids.valid_resident_ids first"
            )
        out = self._permute(body, b"tianluo/fpe/resident_id", forward)
        tokens = np.concatenate([out + np.uint8(48), _resident_check(out)[:, None]], axis=1)
        return strings_from_buffers(fixed_tokens(present, 18)[0], np.ascontiguousarray(tokens).ravel(), present)

    def resident_ids(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """18-character tokens of resident IDs with a valid check character (`x` is read as `X`)."""
        return self._resident(values, True)

    def decrypt_resident_ids(self, tokens: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The resident IDs behind `resident_ids` tokens (unaudited: people go through the vault)."""
        return self._resident(tokens, False)

    def _cards(self, values: pa.Array | pa.ChunkedArray, forward: bool) -> pa.Array:
        data, offsets, present = string_buffers(values)
        lengths = np.diff(offsets)
        out_data = data.copy()
        for width in np.unique(lengths[present]):
            rows = np.flatnonzero(present & (lengths == width))
            if not 13 <= width <= 19:
                raise ValueError(f"row {int(rows[0])}: a card number token needs 13-19 digits, got {width}")
            mat = data[offsets[rows][:, None] + np.arange(width)[None, :]] - np.uint8(48)
            ok = (mat <= 9).all(axis=1)
            ok &= luhn_check_digits(np.where(mat[:, :-1] <= 9, mat[:, :-1], 0)) == mat[:, -1]
            if not ok.all():
                raise ValueError(f"row {int(rows[np.argmin(ok)])}: not a card number with a valid Luhn check digit")
            bin_part, middle = mat[:, :CARD_BIN_DIGITS], mat[:, CARD_BIN_DIGITS:-1]
            # The BIN and the length are in the tweak: equal middles under different BINs differ.
            label = np.frombuffer(f"tianluo/fpe/bank_card/{width}/".encode(), np.uint8)
            tweak = np.concatenate([np.broadcast_to(label, (len(rows), len(label))), bin_part + np.uint8(48)], axis=1)
            new_middle = self._permute(middle, tweak, forward)
            body = np.concatenate([bin_part, new_middle], axis=1)
            token = np.concatenate([body, luhn_check_digits(body)[:, None].astype(np.uint8)], axis=1) + np.uint8(48)
            out_data[offsets[rows][:, None] + np.arange(width)[None, :]] = token
        # Absent rows (null or empty) keep their zero length, so the input offsets still fit.
        return strings_from_buffers(offsets - offsets[0], out_data[offsets[0] : offsets[-1]], present)

    def bank_cards(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Card-number tokens: same length, same 6-digit BIN, new middle digits, valid Luhn digit."""
        return self._cards(values, True)

    def decrypt_bank_cards(self, tokens: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The card numbers behind `bank_cards` tokens (unaudited: people go through the vault)."""
        return self._cards(tokens, False)
