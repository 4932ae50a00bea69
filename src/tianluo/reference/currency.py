"""Currency codes, the names real data uses for them, and the dated FX table that turns every amount into CNY."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType

import polars as pl

DATA_DIR = Path(__file__).parent / "data"
CURRENCIES_CSV = DATA_DIR / "currencies.csv"
FX_RATES_CSV = DATA_DIR / "fx_rates.csv"


#: The reporting currency: every amount is normalised to it, so it never needs a rate.
BASE_CURRENCY = "CNY"

#: Columns an FX file must have; `source` is part of the layout so every rate stays traceable.
FX_COLUMNS: tuple[str, ...] = ("date", "currency", "cny_per_unit", "source")

# At most this many problems are listed in one FxTableError: enough to show a pattern, short
# enough to read.
_MAX_REPORTED_PROBLEMS = 10


@dataclass(frozen=True)
class Currency:
    """One row of currencies.csv: an ISO 4217 code (current or withdrawn) or a virtual asset."""

    code: str
    numeric_code: str | None
    minor_units: int | None  # None where ISO 4217 says "N.A." (metals, SDR, XTS, XXX)
    name: str
    virtual: bool
    active: bool
    fund: bool
    superseded_by: str | None
    superseded_from: str | None
    aliases: tuple[str, ...]


class FxTableError(ValueError):
    """An FX file that cannot be used; the message names the file, line and field to fix."""


def _alias_key(values: pl.Series) -> pl.Series:
    """Fold case and drop all whitespace, so ' US  dollar ' and 'US Dollar' are the same key.

    Both the alias table and the data go through this one function, so they cannot disagree on
    what "case- and whitespace-insensitive" means (Unicode case folding, Unicode whitespace
    including the ideographic space U+3000 common in Chinese exports).
    """
    return values.cast(pl.String).str.to_lowercase().str.replace_all(r"\s+", "")


def _read_currencies() -> dict[str, Currency]:
    frame = pl.read_csv(CURRENCIES_CSV, comment_prefix="#", infer_schema=False)

    def opt(value: str | None) -> str | None:
        return value if value else None

    out: dict[str, Currency] = {}
    for row in frame.iter_rows(named=True):
        minor = opt(row["minor_units"])
        out[row["code"]] = Currency(
            code=row["code"],
            numeric_code=opt(row["numeric_code"]),
            minor_units=int(minor) if minor is not None else None,
            name=row["name"],
            virtual=row["virtual"] == "true",
            active=row["active"] == "true",
            fund=row["fund"] == "true",
            superseded_by=opt(row["superseded_by"]),
            superseded_from=opt(row["superseded_from"]),
            aliases=tuple(a for a in (row["aliases"] or "").split("|") if a),
        )
    return out


@cache
def currencies() -> Mapping[str, Currency]:
    """Every currency Tianluo knows, by code (read once from the packaged currencies.csv).

    Read-only, because it is shared by every caller in the process.
    """
    return MappingProxyType(_read_currencies())


@cache
def _alias_table() -> tuple[list[str], list[str]]:
    """(keys, codes) for every spelling that resolves to a code.

    A key comes from, in order of precedence: the code itself; the explicit aliases; the ISO
    numeric code of an active currency (card data, ISO 8583 field 49, carries only that); the ISO
    name of an active currency. Numeric codes and names of withdrawn currencies are left out
    because ISO reuses them (532 was ANG and is now XCG; MRO and MRU are both "Ouguiya"), and an
    ISO name shared by two active codes (VES and VED are both "Bolívar Soberano") is left out for
    the same reason: a guess there would put money in the wrong currency.
    """
    table = currencies()
    explicit: list[tuple[str, str]] = [(c.code, c.code) for c in table.values()]
    explicit += [(alias, c.code) for c in table.values() for alias in c.aliases]
    implicit: list[tuple[str, str]] = []
    for c in table.values():
        if c.active and c.numeric_code:
            implicit.append((c.numeric_code, c.code))
            implicit.append((str(int(c.numeric_code)), c.code))
    names = [(c.name, c.code) for c in table.values() if c.active]

    def keys_of(pairs: list[tuple[str, str]]) -> list[str]:
        return _alias_key(pl.Series([spelling for spelling, _ in pairs], dtype=pl.String)).to_list()

    mapping: dict[str, str] = {}
    for key, (_, code) in zip(keys_of(explicit), explicit, strict=True):
        if mapping.get(key, code) != code:
            raise ValueError(f"{CURRENCIES_CSV}: alias {key!r} names both {mapping[key]} and {code}")
        mapping[key] = code
    for key, (_, code) in zip(keys_of(implicit), implicit, strict=True):
        mapping.setdefault(key, code)
    name_keys = keys_of(names)
    uses = Counter(name_keys)
    for key, (_, code) in zip(name_keys, names, strict=True):
        if uses[key] == 1:
            mapping.setdefault(key, code)
    return list(mapping), list(mapping.values())


def normalise_currency(values: pl.Series) -> pl.Series:
    """Map currency codes and names as found in source data to codes; null where unknown.

    Accepts codes ('usd'), AMLworld names ('US Dollar', 'Yuan', 'Bitcoin'), Chinese names
    ('人民币', '港币'), 'RMB', and ISO numeric codes ('840'), ignoring case and whitespace. The
    work is done once per distinct value, so a 5-million-row column with a few dozen currencies
    costs little more than one hash lookup per row. Input nulls stay null.
    """
    keys, codes = _alias_table()
    strings = values.cast(pl.String)
    distinct = strings.unique().drop_nulls()
    resolved = _alias_key(distinct).replace_strict(keys, codes, default=None, return_dtype=pl.String)
    return strings.replace_strict(distinct, resolved, default=None, return_dtype=pl.String).alias(values.name)


def is_known_currency(code: str) -> bool:
    """True when `code` (any case, surrounding blanks ignored) is a code in currencies.csv.

    Only codes count here, not names: use normalise_currency first on raw source values.
    """
    return code.strip().upper() in currencies()


def minor_units(code: str) -> int:
    """Decimal places of the currency's minor unit (USD 2, JPY 0, KWD 3, BTC 8).

    Raises KeyError for an unknown code and ValueError where ISO 4217 defines none ("N.A.":
    gold, SDR, XTS...), because rounding such an amount to 0 places would silently lose value.
    """
    currency = currencies().get(code.strip().upper())
    if currency is None:
        raise KeyError(f"unknown currency code {code!r}; see {CURRENCIES_CSV}")
    if currency.minor_units is None:
        raise ValueError(f"{currency.code} ({currency.name}) has no minor unit in ISO 4217 (N.A.)")
    return currency.minor_units


class FxTable:
    """A dated table of CNY per unit of each currency, looked up as of each transaction's date.

    The packaged table (reference/data/fx_rates.csv) is monthly and documented row by row; an
    institution passes its own file in the same layout to use the rates it books at.
    """

    def __init__(self, rates: pl.DataFrame, path: Path) -> None:
        """Build from validated rates (columns date, currency, cny_per_unit, source).

        Prefer FxTable.load, which validates; this constructor trusts its input.

        The as-of lookup is precomputed here as a dense grid: one cell per (currency, day) from
        the table's first to its last date, holding the rate in effect that day (built with one
        join_asof). Converting then costs one gather per row, with no sort of the transactions
        and no reordering afterwards, so order is kept by construction and 5 million rows take a
        fraction of a second. Days after the last row use the last rate, as an as-of lookup does.
        """
        if rates.is_empty():
            raise ValueError(f"{path}: an FX table needs at least one rate")
        self.path = path
        self.rates = rates.sort("currency", "date")
        self._codes: list[str] = self.rates.get_column("currency").unique().sort().to_list()
        # CNY goes last, so its physical index (len(codes)) marks "no conversion needed".
        self._enum = pl.Enum([*self._codes, BASE_CURRENCY])
        days = pl.date_range(self.rates["date"].min(), self.rates["date"].max(), "1d", eager=True)
        self._first_day: int = days.cast(pl.Int32)[0]
        self._n_days = len(days)
        grid = (
            pl.DataFrame({"currency": self._codes})
            .join(days.to_frame("date"), how="cross")
            .join_asof(
                self.rates.select("currency", "date", "cny_per_unit"),
                on="date",
                by="currency",
                check_sortedness=False,  # both sides are sorted by currency, then date
            )
        )
        self._grid = grid.get_column("cny_per_unit")

    @classmethod
    def load(cls, path: str | Path | None = None, *, on_top_of_packaged: bool = False) -> FxTable:
        """Read and validate an FX file; None means the packaged table.

        A user file replaces the packaged table. With on_top_of_packaged=True it replaces only
        the currencies it lists and the packaged rows are kept for the others, so a bank that
        supplies its own USD/HKD/EUR rates still gets the reference rates for BTC or RUB. Rows of
        one currency never mix sources, which keeps each converted amount traceable to one file.
        Raises FxTableError naming the file, line and field of each bad row.
        """
        if path is None:
            return _packaged_table()
        user = _read_fx_file(Path(path))
        if not on_top_of_packaged:
            return cls(user, Path(path))
        packaged = _packaged_table().rates
        kept = packaged.filter(~pl.col("currency").is_in(user.get_column("currency").unique().implode()))
        return cls(pl.concat([kept, user]), Path(path))

    def to_cny(self, amount: pl.Series, currency: pl.Series, ts: pl.Series) -> pl.Series:
        """Convert amounts to CNY at the rate in effect on each transaction's UTC date.

        The rate used is the latest table row for that currency dated on or before the UTC date
        of `ts` (an as-of lookup: a rate holds until the next one). CNY amounts are returned as
        they are. The result is rounded half away from zero to 2 decimals (fen) and is null where
        there is no rate: currency not in the table, date before its first rate, or any input
        null. Row order is that of the input. `ts` must be a Datetime column; naive values are
        taken as UTC. `currency` must hold codes: run normalise_currency on raw source values.
        """
        n = len(amount)
        if len(currency) != n or len(ts) != n:
            raise ValueError(
                f"to_cny needs columns of equal length; got amount={n}, currency={len(currency)}, ts={len(ts)}"
            )
        if not isinstance(ts.dtype, pl.Datetime):
            raise TypeError(f"to_cny needs ts as a Datetime column, got {ts.dtype}")
        utc = ts.dt.convert_time_zone("UTC") if ts.dtype.time_zone is not None else ts
        n_codes, n_days = len(self._codes), self._n_days
        rows = pl.DataFrame(
            {
                "amount": amount.cast(pl.Float64),
                # Unknown codes and nulls cast to null, and null propagates to "no rate" below.
                "cur": currency.cast(pl.String).cast(self._enum, strict=False).to_physical().cast(pl.Int64),
                "day": utc.dt.date().cast(pl.Int32).cast(pl.Int64) - self._first_day,
            }
        )
        in_table = (pl.col("cur") < n_codes) & (pl.col("day") >= 0)
        # Clipped so the gather stays in bounds for every row; rows outside the grid are masked above.
        cell = pl.col("cur").clip(0, max(n_codes - 1, 0)) * n_days + pl.col("day").clip(0, max(n_days - 1, 0))
        converted = rows.select(
            pl.when(pl.col("cur") == n_codes)
            .then(pl.col("amount"))
            .when(in_table)
            .then(pl.col("amount") * pl.lit(self._grid).gather(cell))
            .round(2, mode="half_away_from_zero")
            .alias(amount.name or "amount_cny")
        )
        return converted.to_series()

    def coverage(self) -> dict[str, tuple[date, date]]:
        """First and last rate date of every currency, to spot gaps before converting."""
        span = (
            self.rates.group_by("currency")
            .agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
            .sort("currency")
        )
        return {c: (f, la) for c, f, la in span.iter_rows()}

    def __repr__(self) -> str:
        return f"FxTable({self.path}, {len(self._codes)} currencies, {self.rates.height} rates)"


@cache
def _packaged_table() -> FxTable:
    # Loaded once per process: it never changes at run time and ingest calls load() per file.
    return FxTable(_read_fx_file(FX_RATES_CSV), FX_RATES_CSV)


def _read_fx_file(path: Path) -> pl.DataFrame:
    """Parse and validate an FX file, or raise FxTableError listing what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FxTableError(f"{path}: cannot read FX file ({exc.strerror})") from exc
    # Comment and blank lines are dropped before parsing; keep each data line's number in the
    # file so an error points at the line a person would open.
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise FxTableError(f"{path}: no header line; expected {','.join(FX_COLUMNS)}")
    header_line = numbered[0][0]
    try:
        raw = pl.read_csv(io.StringIO("\n".join(line for _, line in numbered)), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise FxTableError(_layout_problem(path, numbered) or f"{path}: not a readable CSV file ({exc})") from exc
    raw = raw.rename(str.strip)
    missing = [c for c in FX_COLUMNS if c not in raw.columns]
    if missing:
        raise FxTableError(
            f"{path}:{header_line}: header lacks column(s) {', '.join(missing)}; expected {','.join(FX_COLUMNS)}"
        )
    if raw.height != len(numbered) - 1:
        raise FxTableError(_layout_problem(path, numbered) or f"{path}: a quoted field spans lines; one rate per line")
    if raw.is_empty():
        raise FxTableError(f"{path}: no rates after the header line {header_line}")
    lines = pl.Series("line", [number for number, _ in numbered[1:]], dtype=pl.Int64)
    return _validate(path, raw.with_columns(lines))


def _layout_problem(path: Path, numbered: list[tuple[int, str]]) -> str | None:
    """Find the lines whose field count differs from the header's, for a parse that failed.

    Only runs when polars could not parse the file, so the common case stays vectorised; the
    usual culprit is an unquoted comma in `source` ("PBOC, central parity").
    """
    records = csv.reader(line for _, line in numbered)
    width = len(next(records))
    bad = [
        f"{path}:{number}: row has {len(fields)} fields, the header has {width}; quote a field that contains a comma"
        for (number, _), fields in zip(numbered[1:], records, strict=False)
        if len(fields) != width
    ]
    return "bad FX file rows:\n" + "\n".join(bad[:_MAX_REPORTED_PROBLEMS]) if bad else None


def _validate(path: Path, raw: pl.DataFrame) -> pl.DataFrame:
    known = list(currencies())
    parsed = raw.select(
        "line",
        pl.col("date").str.strip_chars().alias("date_text"),
        pl.col("currency").str.strip_chars().str.to_uppercase().alias("currency"),
        pl.col("cny_per_unit").str.strip_chars().alias("rate_text"),
        pl.col("source").fill_null("").str.strip_chars().alias("source"),
    ).with_columns(
        pl.col("date_text").str.strptime(pl.Date, "%Y-%m-%d", strict=False).alias("date"),
        pl.col("rate_text").cast(pl.Float64, strict=False).alias("cny_per_unit"),
    )
    problems = pl.concat(
        [
            parsed.filter(pl.col("date").is_null()).select(
                "line",
                pl.lit("date").alias("field"),
                pl.format("'{}' is not a date; write YYYY-MM-DD", pl.col("date_text").fill_null("")).alias("why"),
            ),
            parsed.filter(pl.col("currency").is_null() | ~pl.col("currency").is_in(known)).select(
                "line",
                pl.lit("currency").alias("field"),
                pl.format(
                    "{} is not a currency code Tianluo knows; use an ISO 4217 code or BTC/ETH/USDT",
                    pl.col("currency").fill_null("(empty)"),
                ).alias("why"),
            ),
            parsed.filter(
                pl.col("cny_per_unit").is_null() | ~pl.col("cny_per_unit").is_finite() | (pl.col("cny_per_unit") <= 0)
            ).select(
                "line",
                pl.lit("cny_per_unit").alias("field"),
                pl.format(
                    "{} is not a positive number of CNY per unit", pl.col("rate_text").fill_null("(empty)")
                ).alias("why"),
            ),
            parsed.filter((pl.col("currency") == BASE_CURRENCY) & (pl.col("cny_per_unit") != 1.0)).select(
                "line",
                pl.lit("cny_per_unit").alias("field"),
                pl.lit("a CNY row must be 1 (CNY amounts are used as they are); drop the row").alias("why"),
            ),
            parsed.filter(pl.struct("date", "currency").is_duplicated() & pl.col("date").is_not_null())
            .with_columns(pl.col("line").min().over("date", "currency").alias("first"))
            .filter(pl.col("line") != pl.col("first"))
            .select(
                "line",
                pl.lit("date").alias("field"),
                pl.format(
                    "second rate for {} on {} (first on line {}); keep one", "currency", "date_text", "first"
                ).alias("why"),
            ),
        ]
    ).sort("line")
    if problems.height:
        first = problems.head(_MAX_REPORTED_PROBLEMS).iter_rows()
        shown = [f"{path}:{line}: {field}: {why}" for line, field, why in first]
        more = problems.height - len(shown)
        tail = [f"... and {more} more problem(s)"] if more else []
        raise FxTableError("bad FX file rows:\n" + "\n".join(shown + tail))
    return parsed.filter(pl.col("currency") != BASE_CURRENCY).select(
        "date", "currency", pl.col("cny_per_unit"), "source"
    )


__all__ = [
    "BASE_CURRENCY",
    "Currency",
    "FxTable",
    "FxTableError",
    "currencies",
    "is_known_currency",
    "minor_units",
    "normalise_currency",
]
