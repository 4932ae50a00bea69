"""FF1 against NIST SP 800-38G's AES samples, and FF1-SM4 resident-ID and card tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from hypothesis import given, settings
from hypothesis import strategies as st

from tianluo.protect import FF1, FormatPreservingTokenizer, Keyring, Vault
from tianluo.protect.fpe import ALPHABET, _step, ecb
from tianluo.reference import china_ids

from .conftest import TEST_KEY

MASTER = bytes.fromhex(TEST_KEY)
AES128 = "2B7E151628AED2A6ABF7158809CF4F3C"
AES192 = AES128 + "EF4359D8D580AA4F"
AES256 = AES192 + "7F036D6F04FC6A94"
TWEAK10 = "39383736353433323130"
TWEAK36 = "3737373770717273373737"
PT36 = "0123456789abcdefghi"

# NIST SP 800-38G FF1 samples 1-9 (samples 1-3 recomputed in REGULATIONS.md §4.2).
NIST_FF1 = [
    (AES128, 10, "", "0123456789", "2433477484"),
    (AES128, 10, TWEAK10, "0123456789", "6124200773"),
    (AES128, 36, TWEAK36, PT36, "a9tv40mll9kdu509eum"),
    (AES192, 10, "", "0123456789", "2830668132"),
    (AES192, 10, TWEAK10, "0123456789", "2496655549"),
    (AES192, 36, TWEAK36, PT36, "xbj3kv35jrawxv32ysr"),
    (AES256, 10, "", "0123456789", "6657667009"),
    (AES256, 10, TWEAK10, "0123456789", "1001623463"),
    (AES256, 36, TWEAK36, PT36, "xs8a0azh2avyalyzuwd"),
]


def _numerals(s: str) -> np.ndarray:
    return np.array([[ALPHABET.index(c) for c in s]], np.uint8)


@pytest.mark.parametrize(("key", "radix", "tweak", "plain", "cipher"), NIST_FF1)
def test_ff1_matches_nist_samples_with_aes(key: str, radix: int, tweak: str, plain: str, cipher: str) -> None:
    ff1 = FF1(ecb(algorithms.AES(bytes.fromhex(key))), radix)
    out = ff1.encrypt(_numerals(plain), bytes.fromhex(tweak))
    assert "".join(ALPHABET[i] for i in out[0]) == cipher
    assert (ff1.decrypt(out, bytes.fromhex(tweak)) == _numerals(plain)).all()


def test_ff1_batch_equals_one_at_a_time_with_per_row_tweaks() -> None:
    ff1 = FF1(ecb(algorithms.SM4(bytes(16))), 10)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 10, (50, 17)).astype(np.uint8)
    tweaks = rng.integers(0, 256, (50, 29)).astype(np.uint8)  # long enough for a whole tweak block
    batch = ff1.encrypt(x, tweaks)
    single = np.concatenate([ff1.encrypt(x[i : i + 1], tweaks[i].tobytes()) for i in range(50)])
    assert (batch == single).all()
    assert (ff1.decrypt(batch, tweaks) == x).all()


def test_ff1_refuses_domains_below_a_million() -> None:
    with pytest.raises(ValueError, match="fewer than 1,000,000"):
        FF1(ecb(algorithms.SM4(bytes(16))), 10).encrypt(np.zeros((1, 5), np.uint8))


def test_step_carries_and_borrows() -> None:
    x = np.array([[9, 9, 9], [0, 0, 0], [1, 2, 9]], np.uint8)
    assert _step(x, 10, 1).tolist() == [[0, 0, 0], [0, 0, 1], [1, 3, 0]]
    assert _step(_step(x, 10, 1), 10, -1).tolist() == x.tolist()


def _resident_ids(n: int, seed: int = 0) -> pa.Array:
    rng = np.random.default_rng(seed)
    regions = np.array([r.code for r in china_ids.regions()])[rng.integers(0, len(china_ids.REGIONS), n)]
    births = np.datetime64("1940-01-01") + rng.integers(0, 30000, n)
    return china_ids.generate_resident_ids(rng, regions, births, rng.choice(["M", "F"], n))


def _cards(n: int, seed: int = 0) -> pa.Array:
    rng = np.random.default_rng(seed)
    lengths = rng.choice([16, 19], n)
    out = []
    for width in lengths:
        body = np.concatenate([[6, 2, 2, 2, 0, 2], rng.integers(0, 10, width - 7)])
        out.append("".join(map(str, body)) + str(china_ids.luhn_check_digits(body[None, :])[0]))
    return pa.array(out)


def test_resident_id_tokens_have_valid_check_characters_and_never_equal_the_input() -> None:
    ids = _resident_ids(20_000)
    fpe = FormatPreservingTokenizer(MASTER)
    tokens = fpe.resident_ids(ids)
    for t in tokens.to_pylist()[:500]:
        assert len(t) == 18 and t[17] == china_ids.resident_id_check_char(t[:17])
    assert not any(a == b for a, b in zip(ids.to_pylist(), tokens.to_pylist(), strict=True))
    assert len(set(tokens.to_pylist())) == len(ids)  # a permutation: distinct IDs, distinct tokens
    assert fpe.decrypt_resident_ids(tokens).equals(ids)
    assert FormatPreservingTokenizer(MASTER).resident_ids(ids).equals(tokens)  # deterministic
    assert not FormatPreservingTokenizer(bytes(32)).resident_ids(ids).equals(tokens)  # keyed


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="0123456789", min_size=17, max_size=17), min_size=1, max_size=20))
def test_resident_id_tokens_round_trip_any_body(bodies: list[str]) -> None:
    ids = pa.array([b + china_ids.resident_id_check_char(b) for b in bodies])
    fpe = FormatPreservingTokenizer(MASTER)
    tokens = fpe.resident_ids(ids)
    assert all(t != v for t, v in zip(tokens.to_pylist(), ids.to_pylist(), strict=True))
    assert fpe.decrypt_resident_ids(tokens).equals(ids)


def test_card_tokens_pass_luhn_keep_bin_and_length() -> None:
    cards = _cards(2000)
    fpe = FormatPreservingTokenizer(MASTER)
    tokens = fpe.bank_cards(cards)
    for c, t in zip(cards.to_pylist(), tokens.to_pylist(), strict=True):
        assert china_ids.is_valid_bank_card(t) and len(t) == len(c) and t[:6] == c[:6] and t != c
    assert fpe.decrypt_bank_cards(tokens).equals(cards)


def test_invalid_input_names_the_row() -> None:
    fpe = FormatPreservingTokenizer(MASTER)
    with pytest.raises(ValueError, match="row 1: not a resident ID"):
        fpe.resident_ids(pa.array(["110101199003077774", "110101199003077775"]))
    with pytest.raises(ValueError, match="row 0: a resident ID must be 18 characters"):
        fpe.resident_ids(pa.array(["E12345678"]))
    with pytest.raises(ValueError, match="row 1: not a card number"):
        fpe.bank_cards(pa.array(["6222020200112233446", "6222020200112233447"]))


def test_nulls_stay_null_and_lowercase_x_reads_as_x() -> None:
    fpe = FormatPreservingTokenizer(MASTER)
    body = "11010519491231002"
    assert china_ids.resident_id_check_char(body) == "X"
    tokens = fpe.resident_ids(pa.array([body + "x", None, ""]))
    assert tokens.to_pylist()[1:] == [None, None]
    assert fpe.decrypt_resident_ids(tokens).to_pylist() == [body + "X", None, None]


def test_fpe_reveal_goes_through_the_audited_vault(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "keyring.json", MASTER)
    ids, cards = _resident_ids(5), _cards(5)
    fpe = FormatPreservingTokenizer(ring)
    with Vault(tmp_path / "vault.sqlite", ring) as vault:
        got = vault.reveal_fpe("resident_id", fpe.resident_ids(ids), reason="STR 2024-18", actor="mlro")
        assert got.equals(ids)
        assert vault.reveal_fpe("bank_card", fpe.bank_cards(cards), reason="STR 2024-18", actor="mlro").equals(cards)
        report = vault.verify_audit()
    assert report.entries == 2
