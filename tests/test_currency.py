"""Currency normalisation and the dated FX table: names from real data, as-of semantics, bad override files."""

from __future__ import annotations

import bisect
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import shared
from tianluo.reference.currency import (
    CURRENCIES_CSV,
    FX_RATES_CSV,
    FxTable,
    FxTableError,
    currencies,
    is_known_currency,
    minor_units,
    normalise_currency,
)

# Currencies the brief requires a rate for, every year 2015-2026.
REQUIRED = (
    *("USD", "EUR", "JPY", "HKD", "GBP", "CHF", "AUD", "CAD", "MXN", "RUB"),
    *("INR", "BRL", "SAR", "ILS", "KRW", "SGD", "BTC", "ETH", "USDT"),
)
MONTHLY = ("USD", "EUR", "HKD", "JPY", "GBP")

AMLWORLD_NAMES = {
    "US Dollar": "USD",
    "Euro": "EUR",
    "Yuan": "CNY",
    "Yen": "JPY",
    "Bitcoin": "BTC",
    "UK Pound": "GBP",
    "Swiss Franc": "CHF",
    "Australian Dollar": "AUD",
    "Canadian Dollar": "CAD",
    "Mexican Peso": "MXN",
    "Ruble": "RUB",
    "Rupee": "INR",
    "Brazil Real": "BRL",
    "Saudi Riyal": "SAR",
    "Shekel": "ILS",
}

CHINESE_NAMES = {
    "人民币": "CNY",
    "RMB": "CNY",
    "美元": "USD",
    "欧元": "EUR",
    "港币": "HKD",
    "港元": "HKD",
    "日元": "JPY",
    "英镑": "GBP",
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ts_series(values: list[datetime | None]) -> pl.Series:
    return pl.Series("ts", values, dtype=pl.Datetime("us", "UTC"))


def normalised(values: list[str | None]) -> list[str | None]:
    return normalise_currency(pl.Series("currency", values, dtype=pl.String)).to_list()


def write_fx(tmp_path: Path, body: str, name: str = "bank_rates.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


# --- names -> codes ---------------------------------------------------------------------------


def test_every_amlworld_currency_name_resolves() -> None:
    assert normalised(list(AMLWORLD_NAMES)) == list(AMLWORLD_NAMES.values())


def test_chinese_names_and_rmb_resolve() -> None:
    assert normalised(list(CHINESE_NAMES)) == list(CHINESE_NAMES.values())


def test_matching_ignores_case_and_whitespace() -> None:
    spellings = ["usd", " USD ", "us dollar", "US  DOLLAR", "US\tDollar", "US\u3000Dollar", "\u3000人民币 ", "Rmb"]
    assert normalised(spellings) == ["USD"] * 5 + ["USD", "CNY", "CNY"]


def test_unknown_is_null_and_null_stays_null() -> None:
    assert normalised(["Dollar", "XYZ", "", None, "Peso", "US Dollar"]) == [None, None, None, None, None, "USD"]


def test_numeric_codes_resolve_to_the_current_holder_of_the_number() -> None:
    # ISO 8583 card data carries numeric codes; 532 was ANG and has been XCG since 2025.
    assert normalised(["840", "156", "008", "8", "532", "975"]) == ["USD", "CNY", "ALL", "ALL", "XCG", None]


def test_iso_name_shared_by_two_codes_is_not_guessed() -> None:
    assert normalised(["Bolívar Soberano", "VES", "VED"]) == [None, "VES", "VED"]


def test_withdrawn_codes_still_load_for_historical_data() -> None:
    assert normalised(["HRK", "bgn", "ANG"]) == ["HRK", "BGN", "ANG"]
    assert currencies()["HRK"].superseded_by == "EUR"
    assert not currencies()["HRK"].active


def test_normalise_keeps_name_and_order() -> None:
    values = pl.Series("Payment Currency", ["Yen", None, "Euro", "Yen"])
    out = normalise_currency(values)
    assert out.name == "Payment Currency"
    assert out.to_list() == ["JPY", None, "EUR", "JPY"]


def test_is_known_currency_and_minor_units() -> None:
    assert is_known_currency("usd") and is_known_currency("BTC") and is_known_currency(" hrk ")
    assert not is_known_currency("US Dollar") and not is_known_currency("XYZ")
    assert [minor_units(c) for c in ("USD", "JPY", "KWD", "CLF", "BTC", "ETH", "USDT")] == [2, 0, 3, 4, 8, 18, 6]
    with pytest.raises(ValueError, match="XAU"):
        minor_units("XAU")
    with pytest.raises(KeyError, match="XYZ"):
        minor_units("XYZ")


def test_currencies_csv_is_the_2026_iso_list_plus_virtual_assets() -> None:
    table = currencies()
    iso_active = [c for c in table.values() if c.active and not c.virtual]
    assert len(iso_active) == 178  # ISO 4217 List one published 2026-01-01
    assert {"XCG", "ZWG", "SLE", "VED", "XAD"} <= {c.code for c in iso_active}
    assert {"BGN", "HRK", "ANG", "ZWL", "SLL"}.isdisjoint({c.code for c in iso_active})
    assert {c.code for c in table.values() if c.virtual} == {"BTC", "ETH", "USDT"}
    assert all(c.numeric_code is None for c in table.values() if c.virtual)
    numbers = [c.numeric_code for c in iso_active]
    assert len(numbers) == len(set(numbers))
    assert all(len(c.code) == 3 and c.code.isupper() for c in iso_active)


# --- to_cny semantics on a small table whose numbers are easy to check -----------------------

SMALL = """\
# a bank's own rates
date,currency,cny_per_unit,source
2024-01-10,USD,7.0,bank
2024-02-01,USD,7.5,bank
2024-01-10,JPY,0.05,bank
"""


@pytest.fixture
def small(tmp_path: Path) -> FxTable:
    return FxTable.load(write_fx(tmp_path, SMALL))


def test_as_of_exactly_on_a_rate_date_and_the_day_before(small: FxTable) -> None:
    ts = ts_series([utc(2024, 2, 1), utc(2024, 1, 31, 23, 59, 59), utc(2024, 1, 10), utc(2030, 1, 1)])
    out = small.to_cny(pl.Series([100.0] * 4), pl.Series(["USD"] * 4), ts)
    assert out.to_list() == [750.0, 700.0, 700.0, 750.0]


def test_before_first_rate_unknown_currency_and_nulls_give_null(small: FxTable) -> None:
    ts = ts_series([utc(2024, 1, 9, 23, 59), utc(2024, 3, 1), utc(2024, 3, 1), None, utc(2024, 3, 1)])
    out = small.to_cny(pl.Series([1.0, 1.0, 1.0, 1.0, None]), pl.Series(["USD", "EUR", None, "USD", "USD"]), ts)
    assert out.to_list() == [None, None, None, None, None]


def test_cny_is_the_amount_itself_whatever_the_date(small: FxTable) -> None:
    ts = ts_series([utc(1999, 1, 1), utc(2024, 5, 5)])
    assert small.to_cny(pl.Series([12.345, 1e9]), pl.Series(["CNY", "CNY"]), ts).to_list() == [12.35, 1e9]


def test_rate_date_is_the_utc_date_of_the_timestamp(small: FxTable) -> None:
    # 07:30 on 1 Feb in Shanghai is still 31 Jan in UTC, so January's rate applies.
    shanghai = pl.Series([datetime(2024, 2, 1, 7, 30)], dtype=pl.Datetime("us")).dt.replace_time_zone("Asia/Shanghai")
    assert small.to_cny(pl.Series([10.0]), pl.Series(["USD"]), shanghai).to_list() == [70.0]


def test_result_is_rounded_to_fen(small: FxTable) -> None:
    out = small.to_cny(pl.Series([1234.0, 0.1]), pl.Series(["JPY", "JPY"]), ts_series([utc(2024, 3, 1)] * 2))
    assert out.to_list() == [61.7, 0.01]


def test_mismatched_lengths_and_non_datetime_ts_are_rejected(small: FxTable) -> None:
    with pytest.raises(ValueError, match="equal length"):
        small.to_cny(pl.Series([1.0]), pl.Series(["USD", "USD"]), ts_series([utc(2024, 3, 1)]))
    with pytest.raises(TypeError, match="Datetime"):
        small.to_cny(pl.Series([1.0]), pl.Series(["USD"]), pl.Series([date(2024, 3, 1)]))


# --- the packaged table -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged() -> FxTable:
    return FxTable.load()


@pytest.fixture(scope="module")
def packaged_rows() -> pl.DataFrame:
    return pl.read_csv(FX_RATES_CSV, comment_prefix="#", schema_overrides={"date": pl.Date})


def reference_to_cny(rows: pl.DataFrame, amount: float, currency: str, when: datetime) -> float | None:
    """The as-of rule written the slow, obvious way, to check the fast one against.

    Python's round() works on the binary float, so it can differ from to_cny's half-away-from-zero
    rounding by one fen on an exact half; callers compare with that tolerance.
    """
    if currency == "CNY":
        return round(amount, 2)
    mine = rows.filter(pl.col("currency") == currency).sort("date")
    dates = mine.get_column("date").to_list()
    i = bisect.bisect_right(dates, when.astimezone(UTC).date()) - 1
    return None if i < 0 else round(amount * mine.get_column("cny_per_unit")[i], 2)


def test_packaged_csv_parses_with_the_documented_layout(packaged_rows: pl.DataFrame) -> None:
    assert packaged_rows.columns == ["date", "currency", "cny_per_unit", "source"]
    assert packaged_rows.filter(pl.struct("date", "currency").is_duplicated()).is_empty()
    assert packaged_rows.get_column("cny_per_unit").min() > 0
    assert packaged_rows.get_column("source").str.len_chars().min() > 0
    header = [line for line in FX_RATES_CSV.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any("override" in line for line in header)


def test_every_rated_currency_is_in_currencies_csv(packaged_rows: pl.DataFrame) -> None:
    rated = set(packaged_rows.get_column("currency").unique().to_list())
    assert rated <= set(currencies()), rated - set(currencies())
    assert "CNY" not in rated


def test_required_currencies_have_a_rate_in_every_year(packaged_rows: pl.DataFrame) -> None:
    years = packaged_rows.group_by("currency").agg(pl.col("date").dt.year().unique().alias("years"))
    have = {c: set(y) for c, y in years.iter_rows()}
    for code in REQUIRED:
        assert set(range(2015, 2027)) <= have[code], (code, sorted(set(range(2015, 2027)) - have[code]))


def test_main_currencies_have_a_rate_every_month(packaged_rows: pl.DataFrame) -> None:
    months = {(y, m) for y in range(2015, 2027) for m in range(1, 13) if (y, m) <= (2026, 10)}
    for code in MONTHLY:
        dates = packaged_rows.filter(pl.col("currency") == code).get_column("date").to_list()
        assert months <= {(d.year, d.month) for d in dates}, code


def test_coverage_reports_first_and_last_rate(packaged: FxTable) -> None:
    coverage = packaged.coverage()
    assert coverage["USD"] == (date(2014, 12, 31), date(2026, 10, 1))
    assert coverage["ETH"][0] == date(2015, 8, 10)
    assert coverage["HRK"][1] == date(2022, 12, 1)  # last ECB quote before Croatia took the euro


def test_packaged_rates_match_the_published_ecb_fixing(packaged: FxTable) -> None:
    # ECB reference rates of 2 January 2024: 1 EUR = 1.0956 USD = 7.8264 CNY = 155.68 JPY; the
    # table keeps crosses to 6 significant figures.
    ts = ts_series([utc(2024, 1, 2, 12)] * 3)
    out = packaged.to_cny(pl.Series([1_000_000.0] * 3), pl.Series(["USD", "EUR", "JPY"]), ts)
    per_unit = [7.8264 / 1.0956, 7.8264, 7.8264 / 155.68]
    assert out.to_list() == [round(1e6 * float(f"{rate:.6g}"), 2) for rate in per_unit]
    assert out.to_list() == [7_143_480.0, 7_826_400.0, 50_272.4]


def test_order_is_kept_on_shuffled_input(packaged: FxTable, packaged_rows: pl.DataFrame) -> None:
    rng = random.Random(7)
    codes = [*REQUIRED, "CNY", "XYZ", "HRK"]
    start = utc(2014, 6, 1)
    cases = [
        (
            round(rng.uniform(0.01, 1e6), 2),
            rng.choice(codes),
            start + timedelta(seconds=rng.randrange(13 * 365 * 86400)),
        )
        for _ in range(3000)
    ]
    rng.shuffle(cases)
    amount, currency, when = (list(column) for column in zip(*cases, strict=True))
    out = packaged.to_cny(pl.Series(amount), pl.Series(currency), ts_series(when))
    expected = [reference_to_cny(packaged_rows, a, c, w) for a, c, w in cases]
    assert out.to_list() == pytest.approx(expected, abs=0.011)
    assert [v is None for v in out.to_list()] == [v is None for v in expected]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["USD", "BTC", "RUB", "ETH", "CNY", "SAR"]),
            st.datetimes(min_value=datetime(2014, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_as_of_lookup_agrees_with_the_obvious_implementation(cases: list[tuple[str, datetime]]) -> None:
    table, rows = FxTable.load(), pl.read_csv(FX_RATES_CSV, comment_prefix="#", schema_overrides={"date": pl.Date})
    # A million units makes neighbouring rates (which can differ in the 6th figure) distinguishable.
    amount = 1e6
    out = table.to_cny(
        pl.Series([amount] * len(cases)), pl.Series([c for c, _ in cases]), ts_series([w for _, w in cases])
    )
    expected = [reference_to_cny(rows, amount, c, w) for c, w in cases]
    assert [v is None for v in out.to_list()] == [v is None for v in expected]
    assert [v for v in out.to_list() if v is not None] == pytest.approx(
        [v for v in expected if v is not None], abs=0.011
    )


def test_amlworld_sample_converts_every_row() -> None:
    """The real AMLworld layout: names normalise and every 2022 amount gets a CNY value."""
    frame = pl.read_csv(shared("amlworld-format/HI-Small_Trans.sample.csv"))
    codes = normalise_currency(frame.get_column("Payment Currency"))
    assert codes.null_count() == 0
    ts = frame.get_column("Timestamp").str.strptime(pl.Datetime("us"), "%Y/%m/%d %H:%M").dt.replace_time_zone("UTC")
    cny = FxTable.load().to_cny(frame.get_column("Amount Paid").cast(pl.Float64), codes, ts)
    assert cny.null_count() == 0
    assert cny.min() >= 0


# --- user override files -------------------------------------------------------------------------


def test_bad_rows_are_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = write_fx(
        tmp_path,
        "# exported from core banking\n"
        "date,currency,cny_per_unit,source\n"
        "2024-01-02,USD,7.1,PBOC\n"
        "2024-13-01,USD,7.2,PBOC\n"
        "2024-01-02,XYZ,1.0,PBOC\n"
        "\n"
        "2024-01-03,EUR,-7.8,PBOC\n"
        "2024-01-02,usd,7.1,PBOC again\n",
    )
    with pytest.raises(FxTableError) as error:
        FxTable.load(path)
    message = str(error.value)
    assert f"{path}:4: date: '2024-13-01' is not a date; write YYYY-MM-DD" in message
    assert f"{path}:5: currency: XYZ is not a currency code" in message
    assert f"{path}:7: cny_per_unit: -7.8 is not a positive number" in message
    assert f"{path}:8: date: second rate for USD on 2024-01-02 (first on line 3)" in message
    assert f"{path}:3:" not in message


def test_unquoted_comma_in_source_names_the_line(tmp_path: Path) -> None:
    path = write_fx(tmp_path, "date,currency,cny_per_unit,source\n2024-01-02,USD,7.1,PBOC, central parity\n")
    with pytest.raises(FxTableError, match=rf"{path}:2: row has 5 fields, the header has 4; quote a field"):
        FxTable.load(path)


def test_missing_column_names_the_header_line(tmp_path: Path) -> None:
    path = write_fx(tmp_path, "# rates\ndate,ccy,cny_per_unit,source\n2024-01-02,USD,7.1,x\n")
    with pytest.raises(FxTableError, match=rf"{path}:2: header lacks column\(s\) currency"):
        FxTable.load(path)


def test_missing_or_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FxTableError, match="cannot read FX file"):
        FxTable.load(tmp_path / "absent.csv")
    with pytest.raises(FxTableError, match="no rates"):
        FxTable.load(write_fx(tmp_path, "date,currency,cny_per_unit,source\n"))


def test_user_file_replaces_the_packaged_table(small: FxTable) -> None:
    assert set(small.coverage()) == {"USD", "JPY"}
    out = small.to_cny(pl.Series([1.0]), pl.Series(["BTC"]), ts_series([utc(2024, 3, 1)]))
    assert out.to_list() == [None]


def test_user_file_on_top_of_packaged_keeps_other_currencies(tmp_path: Path, packaged: FxTable) -> None:
    table = FxTable.load(write_fx(tmp_path, SMALL), on_top_of_packaged=True)
    ts = ts_series([utc(2024, 3, 1)] * 3)
    out = table.to_cny(pl.Series([100.0, 1.0, 1.0]), pl.Series(["USD", "BTC", "EUR"]), ts)
    reference = packaged.to_cny(pl.Series([1.0, 1.0]), pl.Series(["BTC", "EUR"]), ts[:2])
    assert out.to_list() == [750.0, *reference.to_list()]
    assert table.coverage()["USD"] == (date(2024, 1, 10), date(2024, 2, 1))


def test_currencies_csv_aliases_are_unambiguous() -> None:
    spellings = [alias for c in currencies().values() for alias in c.aliases]
    keys = pl.Series(spellings).str.to_lowercase().str.replace_all(r"\s+", "")
    assert keys.is_duplicated().sum() == 0
    assert CURRENCIES_CSV.read_text(encoding="utf-8").startswith("#")
