"""Chinese identifiers: generate and validate resident IDs, social credit codes, mobiles and cards.

Ingest validates these before it tokenizes them (a token of a malformed ID is a
token of garbage), and the simulator generates them so that the same checks pass
on synthetic data. Every check is vectorised: a million IDs are validated in well
under a second, so validation never becomes the slow step of an ingest.

Standards implemented:

- GB 11643-1999 citizen identity number: 6-digit region code, birth date
  YYYYMMDD, 3-digit sequence (odd = male), ISO 7064 MOD 11-2 check character.
- GB 32100-2015 unified social credit code (USCC): registration authority,
  entity type, 6-digit region, 9-character GB 11714 organisation code (with its
  own check character), and a MOD 31 check character.
- Mainland mobile numbers (11 digits, allocated 13x-19x prefixes).
- UnionPay-style bank card numbers (ISO/IEC 7812 Luhn check digit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# --- GB 11643-1999 resident identity number --------------------------------------------------

#: Weights of the 17 body digits (2^(17-i) mod 11), GB 11643-1999 §7.
RESIDENT_ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Check character indexed by (weighted sum mod 11).
RESIDENT_ID_CHECK = "10X98765432"

#: First two digits of a GB/T 2260 code that belong to a province-level division. 71 Taiwan,
#: 81/82 Hong Kong/Macao and 83 are used by residence permits (GB 11643 format) of their people.
PROVINCE_PREFIXES: frozenset[int] = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
     50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)

# --- GB 32100-2015 unified social credit code and GB 11714 organisation code ----------------

#: The 31 characters of a USCC (no I, O, S, V, Z), in value order.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: Weights 3^i mod 31 of the 17 body characters, GB 32100-2015 §5.
USCC_WEIGHTS: tuple[int, ...] = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
#: Weights of the 8 body characters of an organisation code, GB 11714-1997.
ORG_CODE_WEIGHTS: tuple[int, ...] = (3, 7, 9, 10, 5, 8, 4, 2)
#: Registration authority codes (first USCC character) defined by GB 32100 and its amendments.
USCC_AUTHORITIES = "123456789ANY"

# --- mobile numbers and bank cards ------------------------------------------------------------

#: Allocated 3-digit mobile prefixes (China Mobile, Unicom, Telecom, Broadnet and MVNOs), with
#: a rough share of numbers in use: the old 13x/15x/18x ranges hold most subscribers.
MOBILE_PREFIXES: dict[int, float] = {
    **{p: 4.0 for p in range(130, 140)},
    145: 0.3, 147: 0.5, 149: 0.2,
    **{p: 3.0 for p in (150, 151, 152, 153, 155, 156, 157, 158, 159)},
    162: 0.1, 165: 0.1, 166: 0.6, 167: 0.1,
    **{p: 0.4 for p in (170, 171, 172, 173, 175, 176, 177, 178)},
    **{p: 3.5 for p in range(180, 190)},
    190: 0.3, 191: 0.5, 192: 0.3, 193: 0.5, 195: 0.4, 196: 0.3, 197: 0.3, 198: 0.8, 199: 1.0,
}


@dataclass(frozen=True)
class Region:
    """A GB/T 2260 county-level division: the code, and names for addresses and branch names."""

    code: str
    province: str
    city: str
    district: str

    @property
    def city_short(self) -> str:
        """City name without its 市 suffix, as used in company names (杭州恒达贸易有限公司)."""
        return self.city.removesuffix("市")


def _r(code: str, province: str, city: str, district: str) -> Region:
    return Region(code, province, city, district)


#: Real GB/T 2260 codes for districts of the pilot cities and other large cities, with a
#: rough population weight: where simulated people live, were born, and banks have branches.
REGIONS: tuple[tuple[Region, float], ...] = (
    (_r("110101", "北京市", "北京市", "东城区"), 0.7),
    (_r("110102", "北京市", "北京市", "西城区"), 1.1),
    (_r("110105", "北京市", "北京市", "朝阳区"), 3.4),
    (_r("110106", "北京市", "北京市", "丰台区"), 2.0),
    (_r("110108", "北京市", "北京市", "海淀区"), 3.1),
    (_r("110114", "北京市", "北京市", "昌平区"), 2.2),
    (_r("120101", "天津市", "天津市", "和平区"), 0.4),
    (_r("120104", "天津市", "天津市", "南开区"), 0.9),
    (_r("310101", "上海市", "上海市", "黄浦区"), 0.7),
    (_r("310104", "上海市", "上海市", "徐汇区"), 1.1),
    (_r("310105", "上海市", "上海市", "长宁区"), 0.7),
    (_r("310106", "上海市", "上海市", "静安区"), 1.0),
    (_r("310110", "上海市", "上海市", "杨浦区"), 1.2),
    (_r("310112", "上海市", "上海市", "闵行区"), 2.6),
    (_r("310115", "上海市", "上海市", "浦东新区"), 5.7),
    (_r("330102", "浙江省", "杭州市", "上城区"), 1.3),
    (_r("330105", "浙江省", "杭州市", "拱墅区"), 1.2),
    (_r("330106", "浙江省", "杭州市", "西湖区"), 1.2),
    (_r("330108", "浙江省", "杭州市", "滨江区"), 0.5),
    (_r("330110", "浙江省", "杭州市", "余杭区"), 1.3),
    (_r("330203", "浙江省", "宁波市", "海曙区"), 0.6),
    (_r("330212", "浙江省", "宁波市", "鄞州区"), 1.0),
    (_r("330302", "浙江省", "温州市", "鹿城区"), 0.8),
    (_r("330782", "浙江省", "金华市", "义乌市"), 1.9),
    (_r("440103", "广东省", "广州市", "荔湾区"), 1.1),
    (_r("440104", "广东省", "广州市", "越秀区"), 1.0),
    (_r("440105", "广东省", "广州市", "海珠区"), 1.8),
    (_r("440106", "广东省", "广州市", "天河区"), 2.2),
    (_r("440111", "广东省", "广州市", "白云区"), 3.7),
    (_r("440113", "广东省", "广州市", "番禺区"), 2.8),
    (_r("440303", "广东省", "深圳市", "罗湖区"), 1.1),
    (_r("440304", "广东省", "深圳市", "福田区"), 1.6),
    (_r("440305", "广东省", "深圳市", "南山区"), 1.8),
    (_r("440306", "广东省", "深圳市", "宝安区"), 4.5),
    (_r("440307", "广东省", "深圳市", "龙岗区"), 4.0),
    (_r("440604", "广东省", "佛山市", "禅城区"), 1.3),
    (_r("441900", "广东省", "东莞市", "东莞市"), 4.0),
    (_r("510104", "四川省", "成都市", "锦江区"), 0.9),
    (_r("510105", "四川省", "成都市", "青羊区"), 1.0),
    (_r("510106", "四川省", "成都市", "金牛区"), 1.3),
    (_r("510107", "四川省", "成都市", "武侯区"), 1.2),
    (_r("510108", "四川省", "成都市", "成华区"), 1.4),
    (_r("510703", "四川省", "绵阳市", "涪城区"), 0.8),
    (_r("500103", "重庆市", "重庆市", "渝中区"), 0.6),
    (_r("500105", "重庆市", "重庆市", "江北区"), 0.9),
    (_r("500106", "重庆市", "重庆市", "沙坪坝区"), 1.5),
    (_r("500112", "重庆市", "重庆市", "渝北区"), 2.2),
    (_r("500101", "重庆市", "重庆市", "万州区"), 1.6),
    (_r("320102", "江苏省", "南京市", "玄武区"), 0.5),
    (_r("320106", "江苏省", "南京市", "鼓楼区"), 0.9),
    (_r("320508", "江苏省", "苏州市", "姑苏区"), 1.0),
    (_r("320213", "江苏省", "无锡市", "梁溪区"), 1.0),
    (_r("420102", "湖北省", "武汉市", "江岸区"), 1.0),
    (_r("420106", "湖北省", "武汉市", "武昌区"), 1.3),
    (_r("420111", "湖北省", "武汉市", "洪山区"), 1.8),
    (_r("610103", "陕西省", "西安市", "碑林区"), 0.8),
    (_r("610113", "陕西省", "西安市", "雁塔区"), 1.5),
    (_r("370102", "山东省", "济南市", "历下区"), 0.8),
    (_r("370202", "山东省", "青岛市", "市南区"), 0.6),
    (_r("350102", "福建省", "福州市", "鼓楼区"), 0.7),
    (_r("350203", "福建省", "厦门市", "思明区"), 1.1),
    (_r("430102", "湖南省", "长沙市", "芙蓉区"), 0.6),
    (_r("430104", "湖南省", "长沙市", "岳麓区"), 1.5),
    (_r("410105", "河南省", "郑州市", "金水区"), 1.7),
    (_r("340104", "安徽省", "合肥市", "蜀山区"), 1.2),
    (_r("210102", "辽宁省", "沈阳市", "和平区"), 0.7),
    (_r("210202", "辽宁省", "大连市", "中山区"), 0.4),
    (_r("130102", "河北省", "石家庄市", "长安区"), 0.6),
    (_r("530102", "云南省", "昆明市", "五华区"), 1.0),
    (_r("450103", "广西壮族自治区", "南宁市", "青秀区"), 1.0),
    (_r("230102", "黑龙江省", "哈尔滨市", "道里区"), 0.8),
)


def regions() -> list[Region]:
    """The embedded region table (for callers that want names, not weights)."""
    return [r for r, _ in REGIONS]


def region_by_code(code: str) -> Region | None:
    """The embedded region with this code, or None (the table is a sample, not all of GB/T 2260)."""
    for r, _ in REGIONS:
        if r.code == code:
            return r
    return None


# --- helpers -----------------------------------------------------------------------------------


def _ascii_matrix(
    values: Iterable[str | None] | pa.Array | pa.ChunkedArray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of every value that is exactly `width` ASCII characters, as an (n, width) uint8 matrix.

    Returns (matrix of the rows that have the right length, boolean mask of those rows);
    working on the raw Arrow buffer avoids a Python loop over a million strings.
    """
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    ok = pc.fill_null(pc.equal(pc.binary_length(arr), width), False).to_numpy(zero_copy_only=False)
    sub = arr.filter(pa.array(ok))
    n = len(sub)
    if n == 0:
        return np.zeros((0, width), np.uint8), ok
    offsets = np.frombuffer(sub.buffers()[1], dtype=np.int32, count=n + 1, offset=sub.offset * 4)
    data = np.frombuffer(sub.buffers()[2], dtype=np.uint8)
    mat = data[offsets[0] : offsets[0] + n * width].reshape(n, width)
    return mat, ok


def fixed_width_strings(matrix: np.ndarray) -> pa.StringArray:
    """An Arrow string array from an (n, width) matrix of ASCII bytes, without a Python loop.

    Generators build identifiers as byte matrices (one column per character), so this is
    how a million of them become strings in milliseconds.
    """
    mat = np.ascontiguousarray(matrix, dtype=np.uint8)
    n, width = mat.shape
    offsets = np.arange(n + 1, dtype=np.int64) * width
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(mat))
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(mat)).cast(pa.string())


def digits_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits (ASCII) of non-negative integers, one column per digit."""
    v = np.array(values, dtype=np.int64)
    if len(v) and v.min() >= 0 and v.max() < 2**32:
        v = v.astype(np.uint32)  # 32-bit division is several times faster
    out = np.empty((len(v), width), dtype=np.uint8)
    # One 1-D divmod per digit: a (n, width) broadcast would allocate width int64 temporaries.
    for j in range(width - 1, -1, -1):
        v, r = np.divmod(v, 10)
        out[:, j] = r
    out += 48
    return out


def _scatter(ok: np.ndarray, valid_sub: np.ndarray) -> np.ndarray:
    out = np.zeros(ok.shape, dtype=bool)
    out[ok] = valid_sub
    return out


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    return dim + ((month == 2) & leap)


# --- resident identity numbers -----------------------------------------------------------------


def resident_id_check_char(body17: str) -> str:
    """The GB 11643 check character (0-9 or X) of the first 17 digits of a resident ID."""
    if len(body17) != 17 or not body17.isascii() or not body17.isdigit():
        raise ValueError(f"resident ID body must be 17 digits, got {body17!r}")
    total = sum(int(c) * w for c, w in zip(body17, RESIDENT_ID_WEIGHTS, strict=True))
    return RESIDENT_ID_CHECK[total % 11]


def _resident_check_codes(digits: np.ndarray) -> np.ndarray:
    """ASCII code of the check character for each row of a (n, 17) matrix of digit values."""
    # float32 products are exact here (sums stay below 2**24) and go through BLAS.
    total = digits.astype(np.float32) @ np.array(RESIDENT_ID_WEIGHTS, dtype=np.float32)
    return np.frombuffer(RESIDENT_ID_CHECK.encode(), dtype=np.uint8)[total.astype(np.int64) % 11]


def _as_number(digits: np.ndarray) -> np.ndarray:
    """The integer spelled by each row of a (n, k) matrix of digit values."""
    k = digits.shape[1]
    return digits.astype(np.int64) @ (10 ** np.arange(k - 1, -1, -1, dtype=np.int64))


def valid_resident_ids(
    values: Iterable[str | None] | pa.Array | pa.ChunkedArray, *, today: dt.date | None = None
) -> np.ndarray:
    """Vectorised GB 11643 validation: a boolean per value (null or wrong length → False).

    Checks the characters, a province-level region prefix, a real birth date between
    1900-01-01 and `today`, and the check character. A lower-case `x` is accepted because
    it is how many systems store the ID; callers normalise before tokenizing.
    """
    mat, ok = _ascii_matrix(values, 18)
    if len(mat) == 0:
        return ok
    d = mat[:, :17] - np.uint8(48)  # wraps non-digits to values > 9
    digits_ok = (d <= 9).all(axis=1)
    d = np.where(digits_ok[:, None], d, np.uint8(0))
    province = _as_number(d[:, 0:2])
    region_ok = np.isin(province, np.fromiter(PROVINCE_PREFIXES, dtype=np.int64))
    ymd = _as_number(d[:, 6:14])
    year, month, day = ymd // 10000, ymd // 100 % 100, ymd % 100
    today = today or dt.date.today()
    date_ok = (
        (year >= 1900) & (month >= 1) & (month <= 12) & (day >= 1)
        & (day <= _days_in_month(year, month))
        & (ymd <= today.year * 10000 + today.month * 100 + today.day)
    )
    last = mat[:, 17]
    last_upper = np.where(last == ord("x"), np.uint8(ord("X")), last)
    check_ok = _resident_check_codes(d) == last_upper
    return _scatter(ok, digits_ok & region_ok & date_ok & check_ok)


def is_valid_resident_id(s: str | None) -> bool:
    """True if `s` is a well-formed 18-digit resident ID with a correct check character."""
    return bool(valid_resident_ids([s])[0])


def resident_id_birth_date(s: str) -> dt.date:
    """Birth date encoded in a resident ID (digits 7-14)."""
    return dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))


def resident_id_gender(s: str) -> str:
    """"M" or "F": the parity of the 17th digit (odd for men), GB 11643 §6.2.3."""
    return "M" if int(s[16]) % 2 else "F"


def generate_resident_ids(
    rng: np.random.Generator,
    region_codes: Sequence[str] | np.ndarray,
    birth_dates: np.ndarray,
    genders: np.ndarray,
) -> pa.StringArray:
    """Valid, mutually distinct resident IDs for the given people, as an Arrow string array.

    `region_codes` are 6-digit strings, `birth_dates` a datetime64[D] array, `genders` an
    array of "M"/"F". The 3-digit sequence is random with the parity the gender needs;
    sequences that collide with another person of the same region and birthday are
    redrawn, as the public security bureau would never issue one number twice.
    """
    n = len(birth_dates)
    region = np.asarray(region_codes).astype(np.int64)
    ymd = np.asarray(birth_dates, dtype="datetime64[D]")
    years = ymd.astype("datetime64[Y]").astype(np.int64) + 1970
    months = ymd.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (ymd - ymd.astype("datetime64[M]")).astype(np.int64) + 1
    male = np.asarray(genders) == "M"
    prefix = region * 10**8 + years * 10**4 + months * 100 + days  # 14 digits
    seq = rng.integers(0, 500, n) * 2 + male
    body = prefix * 1000 + seq
    for _ in range(100):
        _, first = np.unique(body, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        seq[dup] = rng.integers(0, 500, int(dup.sum())) * 2 + male[dup]
        body[dup] = prefix[dup] * 1000 + seq[dup]
    else:  # pragma: no cover - needs > 500 people per region, birthday and gender
        raise ValueError("too many people share a region and birthday to give them distinct IDs")
    mat = np.empty((n, 18), dtype=np.uint8)
    mat[:, :17] = digits_matrix(body, 17)
    mat[:, 17] = _resident_check_codes(mat[:, :17] - 48)
    return fixed_width_strings(mat)


# --- organisation codes and unified social credit codes ---------------------------------------

_USCC_VALUE = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_VALUE[ord(_c)] = _i
_ORG_VALUE = np.full(256, -1, dtype=np.int64)
for _i in range(10):
    _ORG_VALUE[48 + _i] = _i
for _i in range(26):
    _ORG_VALUE[65 + _i] = 10 + _i  # GB 11714: A=10 … Z=35


def org_code_check_char(body8: str) -> str:
    """The GB 11714 check character of an 8-character organisation code body (0-9 or X)."""
    if len(body8) != 8 or not body8.isascii() or not body8.isalnum() or body8 != body8.upper():
        raise ValueError(f"organisation code body must be 8 digits/capitals, got {body8!r}")
    total = sum(int(_ORG_VALUE[ord(c)]) * w for c, w in zip(body8, ORG_CODE_WEIGHTS, strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def _org_check_codes(values: np.ndarray) -> np.ndarray:
    """ASCII check character for each row of an (n, 8) matrix of organisation-code values."""
    total = values.astype(np.float32) @ np.array(ORG_CODE_WEIGHTS, dtype=np.float32)
    c = 11 - total.astype(np.int64) % 11
    return np.where(c == 10, ord("X"), np.where(c == 11, ord("0"), 48 + c)).astype(np.uint8)


def uscc_check_char(body17: str) -> str:
    """The GB 32100 check character of the first 17 characters of a USCC."""
    if len(body17) != 17 or any(c not in USCC_ALPHABET for c in body17):
        raise ValueError(f"USCC body must be 17 characters of {USCC_ALPHABET}, got {body17!r}")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(body17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def _uscc_check_codes(values: np.ndarray) -> np.ndarray:
    """ASCII check character for each row of an (n, 17) matrix of USCC character values."""
    total = values.astype(np.float32) @ np.array(USCC_WEIGHTS, dtype=np.float32)
    rem = (31 - total.astype(np.int64) % 31) % 31
    return np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)[rem]


def valid_usccs(values: Iterable[str | None] | pa.Array | pa.ChunkedArray, *, strict: bool = True) -> np.ndarray:
    """Vectorised GB 32100 validation: a boolean per value (null or wrong length → False).

    Always checks the alphabet and the final check character. `strict` also checks what
    GB 32100 requires of the parts: a known registration authority, a province-level
    region, and a correct GB 11714 check character inside the organisation code. Lenient
    mode exists for sources with legacy codes whose embedded organisation code predates
    the scheme.
    """
    mat, ok = _ascii_matrix(values, 18)
    if len(mat) == 0:
        return ok
    vals = _USCC_VALUE[mat]
    chars_ok = (vals >= 0).all(axis=1)
    safe = np.where(vals >= 0, vals, 0)
    valid = chars_ok & (_uscc_check_codes(safe[:, :17]) == mat[:, 17])
    if strict:
        auth_ok = np.isin(mat[:, 0], np.frombuffer(USCC_AUTHORITIES.encode(), dtype=np.uint8))
        region_digits = (mat[:, 2:8] >= 48) & (mat[:, 2:8] <= 57)
        province = (mat[:, 2].astype(np.int64) - 48) * 10 + mat[:, 3] - 48
        region_ok = region_digits.all(axis=1) & np.isin(province, np.fromiter(PROVINCE_PREFIXES, dtype=np.int64))
        org_vals = _ORG_VALUE[mat[:, 8:16]]
        org_ok = (org_vals >= 0).all(axis=1) & (_org_check_codes(np.where(org_vals >= 0, org_vals, 0)) == mat[:, 16])
        valid &= auth_ok & region_ok & org_ok
    return _scatter(ok, valid)


def is_valid_uscc(s: str | None, *, strict: bool = True) -> bool:
    """True if `s` is a valid unified social credit code (see `valid_usccs` for `strict`)."""
    return bool(valid_usccs([s], strict=strict)[0])


def is_valid_org_code(s: str | None) -> bool:
    """True if `s` is a 9-character GB 11714 organisation code (an optional hyphen before the check)."""
    if s is None:
        return False
    s = s.replace("-", "") if len(s) == 10 and s[8] == "-" else s
    if len(s) != 9 or not s.isascii():
        return False
    try:
        return org_code_check_char(s[:8]) == s[8]
    except ValueError:
        return False


def generate_usccs(
    rng: np.random.Generator,
    region_codes: Sequence[str] | np.ndarray,
    entity_types: Sequence[str] | np.ndarray | None = None,
) -> pa.StringArray:
    """Valid, mutually distinct USCCs registered with market regulation (authority "9").

    `entity_types` is "1" for companies and "2" for individual businesses (个体工商户),
    default all "1". The organisation code body follows the post-2015 pattern of a
    letter-led code ("MA…" for new registrants) or an older all-digit one, with its GB 11714
    check character, so strict validation passes.
    """
    n = len(region_codes)
    mat = np.empty((n, 18), dtype=np.uint8)
    mat[:, 0] = ord("9")
    types = np.full(n, "1") if entity_types is None else np.asarray(entity_types)
    mat[:, 1] = types.astype("S1").view(np.uint8)
    mat[:, 2:8] = digits_matrix(np.asarray(region_codes).astype(np.int64), 6)
    # Organisation code body: ~60 % issued since 2015 ("MA" + 6 chars of the USCC alphabet),
    # the rest older 8-digit codes.
    uscc_chars = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    body = np.empty((n, 8), dtype=np.uint8)
    new = rng.random(n) < 0.6
    body[:, :2] = digits_matrix(rng.integers(10, 100, n), 2)
    body[new, 0] = ord("M")
    body[new, 1] = ord("A")
    body[:, 2:] = np.where(
        new[:, None], uscc_chars[rng.integers(0, 31, (n, 6))], 48 + rng.integers(0, 10, (n, 6))
    )
    # Organisation codes are nationally unique: redraw the tails of any that collide.
    org_base = 36 ** np.arange(7, -1, -1, dtype=np.int64)
    for _ in range(100):
        key = _ORG_VALUE[body] @ org_base
        _, first = np.unique(key, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        body[dup, 2:] = 48 + rng.integers(0, 10, (int(dup.sum()), 6))
    mat[:, 8:16] = body
    mat[:, 16] = _org_check_codes(_ORG_VALUE[body])
    mat[:, 17] = _uscc_check_codes(_USCC_VALUE[mat[:, :17]])
    return fixed_width_strings(mat)


# --- mobile numbers ------------------------------------------------------------------------------


def generate_mobiles(rng: np.random.Generator, n: int) -> pa.StringArray:
    """`n` distinct 11-digit mainland mobile numbers with realistic prefix shares."""
    prefixes = np.fromiter(MOBILE_PREFIXES, dtype=np.int64)
    w = np.fromiter(MOBILE_PREFIXES.values(), dtype=np.float64)
    numbers = prefixes[rng.choice(len(prefixes), n, p=w / w.sum())] * 10**8 + rng.integers(0, 10**8, n)
    for _ in range(100):
        _, first = np.unique(numbers, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        numbers[dup] = numbers[dup] // 10**8 * 10**8 + rng.integers(0, 10**8, int(dup.sum()))
    return fixed_width_strings(digits_matrix(numbers, 11))


def valid_mobiles(values: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Vectorised check: 11 digits with an allocated 3-digit prefix (no +86, no separators)."""
    mat, ok = _ascii_matrix(values, 11)
    if len(mat) == 0:
        return ok
    digits_ok = ((mat >= 48) & (mat <= 57)).all(axis=1)
    d = mat[:, :3].astype(np.int64) - 48
    prefix = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    return _scatter(ok, digits_ok & np.isin(prefix, np.fromiter(MOBILE_PREFIXES, dtype=np.int64)))


def is_valid_mobile(s: str | None) -> bool:
    """True if `s` is an 11-digit mainland mobile number with an allocated prefix."""
    return bool(valid_mobiles([s])[0])


# --- bank cards (Luhn) -------------------------------------------------------------------------------


def luhn_check_digits(digits: np.ndarray) -> np.ndarray:
    """ISO/IEC 7812 (Luhn) check digit for each row of an (n, k) matrix of digit values."""
    d = np.asarray(digits, dtype=np.int16)
    k = d.shape[1]
    # Double every second digit counting leftwards from the digit next to the check digit.
    doubled = (np.arange(k)[::-1] % 2) == 0
    v = np.where(doubled, d * 2, d)
    v = np.where(v > 9, v - 9, v)
    return (10 - v.sum(axis=1, dtype=np.int64) % 10) % 10


def is_valid_bank_card(s: str | None) -> bool:
    """True if `s` is 16-19 digits with a correct Luhn check digit (UnionPay card numbers)."""
    if s is None or not (16 <= len(s) <= 19) or not s.isascii() or not s.isdigit():
        return False
    d = np.frombuffer(s.encode(), dtype=np.uint8).astype(np.int64) - 48
    return int(luhn_check_digits(d[None, :-1])[0]) == d[-1]
