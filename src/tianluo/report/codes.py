"""Value formats and code tables of the regulator formats: China time, `@N`, amounts, CAMLMAC and goAML codes.

Every rule here comes from REGULATIONS.md §3 (the CAMLMAC interface specification V1.0 of
May 2017, and the goAML structure as several FIUs publish it). Where that text gives only
the shape of a code (for example "account types 1200xx personal") the concrete value chosen
here is marked UNVERIFIED, and both code tables can be replaced per institution
(`CamlmacCodes`, `GoamlCodes`) without touching the generators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from tianluo.reference.china_ids import is_valid_resident_id, is_valid_uscc

#: CAMLMAC's substitute for a value that does not apply or is not available (spec §9.7-4).
NA = "@N"
#: China Standard Time. Fixed UTC+8: China has kept no daylight saving time since 1991.
CHINA_TZ = timezone(timedelta(hours=8), "UTC+08:00")
#: Largest number of digits CAMLMAC allows in an amount, and of them, decimals.
AMOUNT_DIGITS = 20
AMOUNT_DECIMALS = 3

_REGION6 = re.compile(r"\d{6}")
_ALPHA2 = re.compile(r"[A-Z]{2}")
_ALPHA3 = re.compile(r"[A-Z]{3}")


def na(value: object) -> str:
    """The value as text, or `@N` when it is missing (None, empty, NaN)."""
    if value is None:
        return NA
    if isinstance(value, float) and value != value:  # NaN
        return NA
    text = str(value).strip()
    return text if text else NA


# --- time ----------------------------------------------------------------------------------------


def china_time(ts: datetime) -> datetime:
    """`ts` as a China wall-clock time; a naive timestamp is taken as UTC, as the data model stores it."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(CHINA_TZ)


def china_today() -> date:
    """Today's date in China: the date a report is generated on, whatever the server's zone."""
    return datetime.now(CHINA_TZ).date()


def camlmac_date(value: date | datetime | None) -> str:
    """`yyyymmdd`; a timestamp gives its China date. `@N` when missing."""
    if value is None:
        return NA
    if isinstance(value, datetime):
        value = china_time(value).date()
    return value.strftime("%Y%m%d")


def camlmac_timestamp(value: datetime | date | None) -> str:
    """`yyyymmddhhmmss` in China time; a bare date has unknown time digits, written `t` (spec §9.7-6)."""
    if value is None:
        return NA
    if isinstance(value, datetime):
        return china_time(value).strftime("%Y%m%d%H%M%S")
    return value.strftime("%Y%m%d") + "tttttt"


def goaml_datetime(value: datetime | date) -> str:
    """goAML's `xs:dateTime` without a zone, in China time (the FIU's local time); dates at midnight."""
    if isinstance(value, datetime):
        return china_time(value).strftime("%Y-%m-%dT%H:%M:%S")
    return value.strftime("%Y-%m-%dT00:00:00")


# --- amounts -------------------------------------------------------------------------------------


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """An exact decimal of what the number means, not of its binary approximation.

    A float goes through `repr`, the shortest text that round-trips, so 0.1 + 0.2 becomes
    Decimal('0.30000000000000004') and then rounds to 0.300 rather than carrying 52 bits of
    binary noise; Decimal(0.1) would give 0.1000000000000000055511151231257827.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"amount {value!r} is not a number")
        return Decimal(repr(value))
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"amount {value!r} is not a number") from None


def format_amount(value: float | int | str | Decimal | None, *, decimals: int = AMOUNT_DECIMALS) -> str:
    """CAMLMAC amount text: rounded half up to `decimals` (≤ 3) places, at least 2 shown, ≤ 20 digits.

    50000 → "50000.00", 1296.5 → "1296.50", 0.1 + 0.2 → "0.30", 1.2345 → "1.235". `@N` when missing.
    Raises ValueError for a negative amount or one with more than 20 digits.
    """
    if value is None or (isinstance(value, float) and value != value):
        return NA
    d = to_decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if d < 0:
        raise ValueError(f"amount {value!r} is negative; CAMLMAC amounts are unsigned")
    text = f"{d:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    if len(whole) + len(frac) > AMOUNT_DIGITS:
        raise ValueError(f"amount {value!r} has more than {AMOUNT_DIGITS} digits")
    return f"{whole}.{frac}"


def goaml_amount(value: float | int | str | Decimal) -> str:
    """goAML amount: two decimals, rounded half up (goAML amounts are `xs:decimal` with 2 places)."""
    d = to_decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{d:f}"


# --- places --------------------------------------------------------------------------------------

#: ISO 3166-1 alpha-2 → alpha-3 (= GB/T 2659) for the jurisdictions a Chinese institution meets most.
#: Not the whole standard: an unlisted code gives `@N` and the report says which code was unknown.
ALPHA3: dict[str, str] = {
    "CN": "CHN", "HK": "HKG", "MO": "MAC", "TW": "TWN", "US": "USA", "GB": "GBR", "DE": "DEU", "FR": "FRA",
    "SG": "SGP", "JP": "JPN", "KR": "KOR", "KP": "PRK", "RU": "RUS", "IN": "IND", "AU": "AUS", "CA": "CAN",
    "NZ": "NZL", "IT": "ITA", "ES": "ESP", "NL": "NLD", "BE": "BEL", "CH": "CHE", "AT": "AUT", "SE": "SWE",
    "NO": "NOR", "DK": "DNK", "FI": "FIN", "IE": "IRL", "PT": "PRT", "LU": "LUX", "PL": "POL", "CZ": "CZE",
    "HU": "HUN", "GR": "GRC", "TR": "TUR", "AE": "ARE", "SA": "SAU", "QA": "QAT", "KW": "KWT", "IL": "ISR",
    "IR": "IRN", "IQ": "IRQ", "SY": "SYR", "EG": "EGY", "ZA": "ZAF", "NG": "NGA", "KE": "KEN", "BR": "BRA",
    "MX": "MEX", "AR": "ARG", "CL": "CHL", "CO": "COL", "PE": "PER", "VE": "VEN", "TH": "THA", "VN": "VNM",
    "MY": "MYS", "ID": "IDN", "PH": "PHL", "MM": "MMR", "KH": "KHM", "LA": "LAO", "PK": "PAK", "BD": "BGD",
    "LK": "LKA", "NP": "NPL", "MN": "MNG", "KZ": "KAZ", "UZ": "UZB", "KG": "KGZ", "TJ": "TJK", "AF": "AFG",
    "UA": "UKR", "BY": "BLR", "VG": "VGB", "KY": "CYM", "BM": "BMU", "PA": "PAN", "BS": "BHS", "BZ": "BLZ",
    "CY": "CYP", "MT": "MLT", "MU": "MUS", "SC": "SYC", "LI": "LIE", "MC": "MCO", "AD": "AND", "JE": "JEY",
    "GG": "GGY", "IM": "IMN", "CW": "CUW", "MH": "MHL", "WS": "WSM", "VU": "VUT",
}


def country_alpha2(region: str | None) -> str | None:
    """ISO alpha-2 country of a `parties.region` value: a 6-digit GB/T 2260 code is China."""
    if not region:
        return None
    region = region.strip().upper()
    if _REGION6.fullmatch(region):
        return "CN"
    if _ALPHA2.fullmatch(region):
        return region
    if _ALPHA3.fullmatch(region):
        back = {v: k for k, v in ALPHA3.items()}
        return back.get(region)
    return None


def nationality(region: str | None) -> str:
    """CAMLMAC 3-letter country (GB/T 2659) of a `parties.region` value, `@N` when unknown."""
    a2 = country_alpha2(region)
    if a2 is None:
        return NA
    return ALPHA3.get(a2, NA)


def place_code(region: str | None) -> str:
    """CAMLMAC 9-character place (TRCD, CFRC): `CHN` + 6-digit county code, or country code + `000000`."""
    if not region:
        return NA
    region = region.strip().upper()
    if _REGION6.fullmatch(region):
        return "CHN" + region
    a3 = nationality(region)
    return NA if a3 == NA else a3 + "000000"


# --- identity documents ----------------------------------------------------------------------------

#: CAMLMAC identity-document codes (GB/T 31186.3 style, REGULATIONS.md §3.1).
ID_RESIDENT = "110001"
ID_PERSON_OTHER_DOMESTIC = "119999"
ID_PERSON_OTHER_FOREIGN = "129999"
ID_USCC = "610099"
ID_ORG_OTHER_DOMESTIC = "619999"
ID_ORG_OTHER_FOREIGN = "629999"
#: Codes whose meaning must be spelt out in the "other type" field (OITP and its siblings).
OTHER_ID_TYPES = {ID_PERSON_OTHER_DOMESTIC, ID_PERSON_OTHER_FOREIGN, ID_ORG_OTHER_DOMESTIC, ID_ORG_OTHER_FOREIGN}


def id_type(kind: str | None, number: str | None, *, revealed: bool, foreign: bool) -> tuple[str, str]:
    """(document type code, "other type" text) of a party's identity number.

    The type is read from the revealed number itself (a resident ID or USCC with a valid check
    character); a token says nothing about what it stands for, so a pseudonymised number has
    type `@N`. A number of another shape is reported as "other domestic / foreign" with the
    description CAMLMAC requires next to the 9999 codes.
    """
    if not number:
        return NA, NA
    if not revealed:
        return NA, NA
    if kind == "enterprise":
        if is_valid_uscc(number):
            return ID_USCC, NA
        return (ID_ORG_OTHER_FOREIGN, "境外机构证件") if foreign else (ID_ORG_OTHER_DOMESTIC, "其他机构证件")
    if is_valid_resident_id(number):
        return ID_RESIDENT, NA
    return (ID_PERSON_OTHER_FOREIGN, "境外个人身份证件") if foreign else (ID_PERSON_OTHER_DOMESTIC, "其他个人证件")


# --- code tables ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CamlmacCodes:
    """How canonical values become CAMLMAC codes. Every default marked UNVERIFIED is a placeholder
    in the shape REGULATIONS.md §3.1 gives, chosen here; an institution replaces it with its filing
    guidance's value (the spec's appendix code tables were not available to this project).
    """

    #: accounts.type → CATP / TCAT. UNVERIFIED sub-codes: the spec gives only "1200xx personal,
    #: 6200xx organisation"; 01 is used for a settlement account. Unlisted types give `@N`.
    account_types: dict[str, str] = field(
        default_factory=lambda: {"personal": "120001", "corporate": "620001"}
    )
    #: channel → the last four digits of TSTP (`xxyy`: xx 00 cash / 01 non-cash; yy instrument:
    #: 10 card, 20 online, 21 mobile, 31 remittance). UNVERIFIED: yy for cash (00), cheque and
    #: clearing (99) and the use of 31 for account transfers are this project's choice.
    tstp_instrument: dict[str, str] = field(
        default_factory=lambda: {
            "cash": "0000", "card": "0110", "mobile": "0121", "transfer": "0131", "wire": "0131",
            "ach": "0131", "cheque": "0199", "crypto": "0199", "reinvestment": "0199", "other": "0199",
        }
    )
    #: channel → OCTT non-counter channel (11 internet, 12 POS, 13 phone, 15 ATM, 99 other);
    #: a channel not listed (cash, transfer at unknown venue) gives `@N`.
    octt: dict[str, str] = field(default_factory=lambda: {"mobile": "11", "card": "12"})
    #: RLFC: relation of institution and customer, 00 = account or card at a domestic institution.
    rlfc: str = "00"

    def tstp(self, channel: str | None, currency: str | None, dst_currency: str | None) -> str:
        """TSTP: `00` CNY, `01` foreign currency, `03` cross-currency (REGULATIONS.md §3.1), then xxyy."""
        tail = self.tstp_instrument.get(channel or "other", self.tstp_instrument.get("other", "0199"))
        if dst_currency and currency and dst_currency != currency:
            head = "03"
        elif currency and currency != "CNY":
            head = "01"
        else:
            head = "00"
        return head + tail

    def account_type(self, type_: str | None) -> str:
        return self.account_types.get(type_ or "", NA)


@dataclass(frozen=True)
class GoamlCodes:
    """goAML lookup values. Every goAML FIU publishes its own lists; these mnemonic defaults are
    this project's and must be replaced with the target FIU's (UNVERIFIED for any real FIU).
    """

    transmode: dict[str, str] = field(
        default_factory=lambda: {
            "cash": "CASH", "transfer": "TRANSFER", "wire": "WIRE", "card": "CARD", "mobile": "MOBILE",
            "ach": "ACH", "cheque": "CHEQUE", "crypto": "VIRTUAL", "reinvestment": "OTHER", "other": "OTHER",
        }
    )
    funds_cash: str = "CASH"
    funds_account: str = "ACCOUNT"
    personal_account_type: dict[str, str] = field(
        default_factory=lambda: {"personal": "PERSONAL", "corporate": "BUSINESS", "payment": "PAYMENT"}
    )
    account_status: str = "ACTIVE"
    account_status_closed: str = "CLOSED"
    signatory_role: str = "HOLDER"
    phone_contact_type: str = "PRIVATE"
    phone_communication_type: str = "MOBILE"
    address_type: str = "RESIDENCE"
    business_address_type: str = "BUSINESS"
    submission_code: str = "E"
    report_code: str = "STR"

    def transmode_code(self, channel: str | None) -> str:
        return self.transmode.get(channel or "other", self.transmode.get("other", "OTHER"))
