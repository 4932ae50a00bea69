"""Benchmark: deterministic tokens for N resident ID numbers, beside AES- and SHA-256-based tokens from OpenSSL.

Contenders, all producing the same shape (`tk1.` + 32 hex digits as an Arrow string column):

- **tianluo HMAC-SM3**: `Tokenizer.tokenize`, the compiled SM3 kernel on every core.
- **AES-128-CMAC, batched**: the same deterministic-token idea with AES, computed the fastest
  way the `cryptography` library allows: CMAC (NIST SP 800-38B) over `field NUL value`, each
  CBC step one AES-ECB call over all values (AES-NI), hex in numpy. Checked against
  `cryptography`'s own CMAC on the first values.
- **HMAC-SHA256 per value** and **HMAC-SM3 per value** (the tokenizer before this kernel):
  OpenSSL through `cryptography`/`hashlib` with a keyed context copied per value, the
  usual way to write it; run on the first `--loop-rows` values because they are slow.

Then format-preserving tokens (FF1-SM4) for resident IDs and bank cards. One line per figure.

    .venv/bin/python bench/tokenization.py --rows 10000000

(Named `tokenization.py`, not `tokenize.py`: a file of that name beside a script shadows
the standard library's `tokenize`, which numpy imports.)
"""

from __future__ import annotations

import argparse
import hmac
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import algorithms

from tianluo.protect import FormatPreservingTokenizer, Tokenizer
from tianluo.protect.fpe import ecb
from tianluo.protect.tokens import fixed_tokens, string_buffers, strings_from_buffers
from tianluo.reference import china_ids

KEY = bytes(range(32))
FIELD = "id_number"
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def resident_ids(n: int, seed: int = 7) -> pa.Array:
    """N distinct, valid resident IDs over the embedded regions and eighty years of birthdays."""
    rng = np.random.default_rng(seed)
    codes = np.array([r.code for r, _ in china_ids.REGIONS])
    weights = np.array([w for _, w in china_ids.REGIONS])
    regions = codes[rng.choice(len(codes), n, p=weights / weights.sum())]
    births = np.datetime64("1940-01-01") + rng.integers(0, 80 * 365, n)
    return china_ids.generate_resident_ids(rng, regions, births, rng.choice(["M", "F"], n))


def bank_cards(n: int, seed: int = 7) -> pa.Array:
    """N 19-digit UnionPay-style card numbers (BIN 622202) with a valid Luhn digit."""
    rng = np.random.default_rng(seed)
    body = np.concatenate([np.tile([6, 2, 2, 2, 0, 2], (n, 1)), rng.integers(0, 10, (n, 12))], axis=1)
    digits = np.concatenate([body, china_ids.luhn_check_digits(body)[:, None]], axis=1)
    return china_ids.fixed_width_strings(digits.astype(np.uint8) + 48)


class AesCmacTokens:
    """AES-128-CMAC deterministic tokens computed column-wise: one AES-ECB call per CBC step."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._ecb = ecb(algorithms.AES(key))
        zero = np.frombuffer(self._ecb(bytes(16)), np.uint8)
        self.k1 = self._double(zero)
        self.k2 = self._double(self.k1)

    @staticmethod
    def _double(block: np.ndarray) -> np.ndarray:
        """Multiplication by x in GF(2^128), SP 800-38B subkey generation."""
        v = int.from_bytes(block.tobytes(), "big") << 1
        if v >> 128:
            v = (v ^ 0x87) & ((1 << 128) - 1)
        return np.frombuffer(v.to_bytes(16, "big"), np.uint8)

    def tags(self, field: str, values: pa.Array) -> np.ndarray:
        """CMAC of `field NUL value` for every value of one length (the IDs all have 18 characters)."""
        data, offsets, _ = string_buffers(values)
        width = int(offsets[1] - offsets[0])
        head = np.frombuffer(field.encode() + b"\x00", np.uint8)
        length = len(head) + width
        nblocks = -(-length // 16)
        msg = np.zeros((len(values), nblocks * 16), np.uint8)
        msg[:, : len(head)] = head
        msg[:, len(head) : length] = data[offsets[0] : offsets[-1]].reshape(-1, width)
        if length % 16:
            msg[:, length] = 0x80
            msg[:, -16:] ^= self.k2
        else:
            msg[:, -16:] ^= self.k1
        y = np.zeros((len(values), 16), np.uint8)
        for b in range(nblocks):
            y = np.frombuffer(self._ecb((y ^ msg[:, 16 * b : 16 * b + 16]).tobytes()), np.uint8).reshape(-1, 16)
        return y

    def tokenize(self, field: str, values: pa.Array) -> pa.Array:
        tags = self.tags(field, values)
        present = np.ones(len(values), bool)
        offsets, _ = fixed_tokens(present, 36)
        out = np.empty((len(values), 36), np.uint8)
        out[:, :4] = np.frombuffer(b"tk1.", np.uint8)
        out[:, 4::2] = _HEX[tags >> 4]
        out[:, 5::2] = _HEX[tags & 0xF]
        return strings_from_buffers(offsets, out.ravel(), present)


def per_value(mac: Callable[[bytes], str], values: list[str]) -> list[str]:
    head = FIELD.encode() + b"\x00"
    return ["tk1." + mac(head + v.encode()) for v in values]


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds (all threads) and the result of one call."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), out


def line(name: str, n: int, wall: float, cpu: float) -> float:
    rate = n / wall
    print(f"{name:<50} {n:>11,} values {wall:8.2f} s {rate:>13,.0f} tokens/s   ({n / cpu:,.0f} per CPU-second)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--loop-rows", type=int, default=1_000_000, help="Values for the per-value Python loops.")
    ap.add_argument("--fpe-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"# {platform.machine()} {platform.processor() or ''} cores={len(os.sched_getaffinity(0))} load={load:.1f}")

    t0 = time.perf_counter()
    ids = resident_ids(args.rows)
    print(f"# generated {args.rows:,} resident IDs in {time.perf_counter() - t0:.1f} s")

    tokenizer = Tokenizer(KEY)
    tokenizer.tokenize(FIELD, ids[:1000])  # compile (or load) the kernel outside the timing
    wall, cpu, ours = timed(lambda: tokenizer.tokenize(FIELD, ids))
    sm3_rate = line("tianluo HMAC-SM3 (compiled, all cores)", args.rows, wall, cpu)
    sample = ids[:1000].to_pylist()
    assert ours[:1000].to_pylist() == [tokenizer.token(FIELD, v) for v in sample]

    aes = AesCmacTokens(KEY[:16])
    wall, cpu, aes_tokens = timed(lambda: aes.tokenize(FIELD, ids))
    aes_rate = line("AES-128-CMAC (cryptography, batched ECB)", args.rows, wall, cpu)
    for v, t in zip(sample[:100], aes_tokens[:100].to_pylist(), strict=True):
        c = cmac.CMAC(algorithms.AES(KEY[:16]))
        c.update(FIELD.encode() + b"\x00" + v.encode())
        assert t == "tk1." + c.finalize().hex()

    loop_values = ids[: args.loop_rows].to_pylist()
    base_sha = crypto_hmac.HMAC(KEY, hashes.SHA256())

    def sha256(m: bytes) -> str:
        h = base_sha.copy()
        h.update(m)
        return h.finalize().hex()[:32]

    wall, cpu, _ = timed(lambda: per_value(sha256, loop_values))
    sha_rate = line("HMAC-SHA256 per value (cryptography)", len(loop_values), wall, cpu)
    base_sm3 = hmac.new(tokenizer.keys.token, digestmod="sm3")

    def sm3(m: bytes) -> str:
        h = base_sm3.copy()
        h.update(m)
        return h.hexdigest()[:32]

    wall, cpu, _ = timed(lambda: per_value(sm3, loop_values))
    loop_rate = line("HMAC-SM3 per value (OpenSSL, previous tokenizer)", len(loop_values), wall, cpu)

    print(f"ratio tianluo HMAC-SM3 / AES-128-CMAC batched                {sm3_rate / aes_rate:.2f}")
    print(f"ratio tianluo HMAC-SM3 / HMAC-SHA256 per value               {sm3_rate / sha_rate:.2f}")
    print(f"ratio tianluo HMAC-SM3 / HMAC-SM3 per value                  {sm3_rate / loop_rate:.2f}")
    print(f"goal >= 1,000,000 tokens/s                                   {'met' if sm3_rate >= 1e6 else 'NOT met'}")

    fpe = FormatPreservingTokenizer(KEY)
    fpe_ids = ids[: args.fpe_rows]
    fpe.resident_ids(fpe_ids[:100])
    wall, cpu, _ = timed(lambda: fpe.resident_ids(fpe_ids))
    line("FF1-SM4 resident-ID tokens (format-preserving)", len(fpe_ids), wall, cpu)
    cards = bank_cards(args.fpe_rows)
    wall, cpu, _ = timed(lambda: fpe.bank_cards(cards))
    line("FF1-SM4 bank-card tokens (format-preserving)", len(cards), wall, cpu)


if __name__ == "__main__":
    main()
