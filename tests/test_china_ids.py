"""Chinese identifiers: published examples, single-error detection, and the vectorised generators."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from tianluo.reference import china_ids as ci

#: The worked example of GB 11643-1999 and examples from python-stdnum's cn.ric tests.
VALID_RESIDENT_IDS = ["11010519491231002X", "360426199101010071", "44011320141005001X", "44011320141005001x",
                      "110102199101010078", "120110199212010072", "412723199010050012"]
INVALID_RESIDENT_IDS = [
    "11010519491231002Y",  # check character
    "110105194912310021",  # check character
    "36042619910102009X",  # check character
    "360426199113010079",  # month 13
    "110105194902300026",  # 30 February
    "990426199112010074",  # no province 99
    "T60426199101010078",  # not a digit
    "1101051949123100",  # too short
    "11010519491231002X1",  # too long
    "",
    None,
]
#: Codes published as valid: the commonly cited Fuzhou example and a sample of the real codes
#: python-stdnum's cn.uscc tests collected (companies, individual businesses, an institution).
VALID_USCCS = ["91350100M000100Y43", "91110000600037341L", "121200004013590816", "91310115MA1K3BTP2B",
               "9144030071526726XG", "9162010555628132X1", "91620105L015101280", "92340602MA2PBMEM24",
               "92340621MA2UK3PJXE", "91340603MA2UJXXCXF"]
INVALID_USCCS = ["91350100M000100Y44", "91110000600037341N", "A1110000600037341L", "9111000060003IOZSV",
                 "12345", None]


def test_resident_id_check_char_of_the_standard_example() -> None:
    assert ci.resident_id_check_char("11010519491231002") == "X"
    assert ci.resident_id_check_char("36042619910101007") == "1"
    with pytest.raises(ValueError):
        ci.resident_id_check_char("1101051949123100")


@pytest.mark.parametrize("value", VALID_RESIDENT_IDS)
def test_published_resident_ids_are_valid(value: str) -> None:
    assert ci.is_valid_resident_id(value)


@pytest.mark.parametrize("value", INVALID_RESIDENT_IDS)
def test_malformed_resident_ids_are_rejected(value: str | None) -> None:
    assert not ci.is_valid_resident_id(value)


def test_resident_id_fields() -> None:
    assert ci.resident_id_birth_date("11010519491231002X") == dt.date(1949, 12, 31)
    assert ci.resident_id_gender("11010519491231002X") == "F"
    assert ci.resident_id_gender("360426199101010071") == "M"
    # A birth date after "today" cannot be on an issued card.
    assert not ci.valid_resident_ids(["44011320141005001X"], today=dt.date(2014, 10, 4))[0]
    assert ci.valid_resident_ids(["44011320141005001X"], today=dt.date(2014, 10, 5))[0]


@pytest.mark.parametrize("value", VALID_USCCS)
def test_published_usccs_are_valid_strictly(value: str) -> None:
    assert ci.is_valid_uscc(value)
    assert ci.uscc_check_char(value[:17]) == value[17]
    assert ci.is_valid_org_code(value[8:17])


@pytest.mark.parametrize("value", INVALID_USCCS)
def test_malformed_usccs_are_rejected(value: str | None) -> None:
    assert not ci.is_valid_uscc(value)


def test_strict_uscc_checks_the_embedded_organisation_code() -> None:
    # Valid final check character, but the organisation code's own check character is wrong.
    body = "91350100M000100Y5"
    code = body + ci.uscc_check_char(body)
    assert ci.is_valid_uscc(code, strict=False)
    assert not ci.is_valid_uscc(code)


def test_organisation_code_check_char() -> None:
    assert ci.org_code_check_char("D2143569") == "X"  # the example of GB 11714
    assert ci.is_valid_org_code("D2143569-X")
    assert ci.org_code_check_char("M000100Y") == "4"
    assert not ci.is_valid_org_code("D2143569-1")
    with pytest.raises(ValueError):
        ci.org_code_check_char("d2143569")


def _people(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    regions = np.array([r.code for r in ci.regions()])[rng.integers(0, len(ci.REGIONS), n)]
    births = np.datetime64("1940-01-01") + rng.integers(0, 30_000, n).astype("timedelta64[D]")
    genders = np.where(rng.random(n) < 0.5, "M", "F")
    return regions, births, genders


def test_generated_resident_ids_are_valid_distinct_and_encode_the_person() -> None:
    rng = np.random.default_rng(1)
    regions, births, genders = _people(rng, 20_000)
    # Everyone born on one day in one district: sequences must still be distinct.
    regions[:400], births[:400] = "110105", np.datetime64("1990-06-01")
    ids = ci.generate_resident_ids(rng, regions, births, genders).to_pylist()
    assert len(set(ids)) == len(ids)
    assert ci.valid_resident_ids(ids).all()
    for i in range(0, len(ids), 997):
        assert ids[i][:6] == regions[i]
        assert ci.resident_id_birth_date(ids[i]) == births[i].astype(dt.date)
        assert ci.resident_id_gender(ids[i]) == genders[i]


def test_every_single_character_error_is_detected() -> None:
    """MOD 11-2 and MOD 31 catch every single substituted character, by construction."""
    rng = np.random.default_rng(2)
    regions, births, genders = _people(rng, 2000)
    ids = ci.generate_resident_ids(rng, regions, births, genders).to_pylist()
    usccs = ci.generate_usccs(rng, regions).to_pylist()
    bad_ids, bad_usccs = [], []
    for rid, code in zip(ids, usccs, strict=True):
        pos = int(rng.integers(0, 18))
        pool = "0123456789X" if pos == 17 else "0123456789"
        bad_ids.append(rid[:pos] + rng.choice([c for c in pool if c != rid[pos]]) + rid[pos + 1 :])
        pos = int(rng.integers(0, 18))
        bad_usccs.append(code[:pos] + rng.choice([c for c in ci.USCC_ALPHABET if c != code[pos]]) + code[pos + 1 :])
    assert not ci.valid_resident_ids(bad_ids).any()
    assert not ci.valid_usccs(bad_usccs, strict=False).any()


def test_generated_usccs_are_valid_and_distinct() -> None:
    rng = np.random.default_rng(3)
    regions = np.array([r.code for r in ci.regions()])[rng.integers(0, len(ci.REGIONS), 20_000)]
    types = np.where(rng.random(20_000) < 0.2, "2", "1")
    codes = ci.generate_usccs(rng, regions, types).to_pylist()
    assert len(set(codes)) == len(codes)
    assert ci.valid_usccs(codes).all()
    assert all(c[0] == "9" and c[1] == t and c[2:8] == r for c, t, r in zip(codes, types, regions, strict=True))
    assert len({c[8:16] for c in codes}) == len(codes)  # organisation codes are nationally unique


def test_mobiles() -> None:
    rng = np.random.default_rng(4)
    numbers = ci.generate_mobiles(rng, 50_000).to_pylist()
    assert len(set(numbers)) == len(numbers)
    assert ci.valid_mobiles(numbers).all()
    prefixes = {n[:2] for n in numbers}
    assert prefixes <= {"13", "14", "15", "16", "17", "18", "19"} and {"13", "15", "18"} <= prefixes
    for bad in ("12345678901", "1381234567", "+8613812345678", "14012345678", "138-1234-5678"):
        assert not ci.is_valid_mobile(bad)
    assert ci.is_valid_mobile("13812345678")


def test_bank_card_luhn() -> None:
    assert ci.is_valid_bank_card("4111111111111111")  # the classic Luhn test number
    assert not ci.is_valid_bank_card("4111111111111112")
    assert not ci.is_valid_bank_card("411111111111")  # too short for a card


def test_vectorised_checks_accept_arrow_and_nulls() -> None:
    arr = pa.chunked_array([["11010519491231002X", None], ["91350100M000100Y43"]])
    assert ci.valid_resident_ids(arr).tolist() == [True, False, False]
    assert ci.valid_usccs(arr).tolist() == [False, False, True]
    assert ci.valid_mobiles(pa.array([], pa.string())).tolist() == []


def test_region_table_is_real_gb2260() -> None:
    codes = [r.code for r in ci.regions()]
    assert len(codes) == len(set(codes)) >= 60
    assert ci.region_by_code("330106").district == "西湖区"
    assert ci.region_by_code("440305").city == "深圳市"
    assert ci.region_by_code("510107").city_short == "成都"
    assert {c[:2] for c in codes} >= {"11", "31", "33", "44", "51", "50"}  # the pilot provinces
    assert all(int(c[:2]) in ci.PROVINCE_PREFIXES for c in codes)
    assert ci.region_by_code("999999") is None
