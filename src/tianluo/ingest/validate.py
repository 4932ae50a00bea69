"""Type, check and normalise one batch of raw records: each row is loaded or quarantined, never both.

The same rules apply to every source format, derived from `tianluo.schema`:
types, required values, allowed vocabularies, parseable timestamps, strictly
positive amounts, known currencies and an FX rate for the day, then the derived
columns (`amount_cny`, `self_transfer`). All of it is vectorised with Polars; a
row's quarantine reason is the first check it fails, in schema order, with the
offending value and what would fix it. Personal data is tokenized here, so no
raw PII leaves this function in either output.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from tianluo.ingest.base import RawBatch
from tianluo.protect import ColumnTokenizer
from tianluo.reference.currency import FxTable, normalise_currency
from tianluo.schema import QUARANTINE, TABLES, Field, Table

_TRUE = ["1", "true", "t", "yes", "y"]
_FALSE = ["0", "false", "f", "no", "n"]
#: Raw text of a rejected account/party line may hold names or ID numbers: never stored.
WITHHELD = "[withheld: the line may contain personal data; read it in the source file]"


@dataclass
class Validated:
    """Output of one batch: canonical rows and quarantined rows, both as Arrow tables."""

    table: str
    loaded: pa.Table
    quarantined: pa.Table


def _polars_type(f: Field) -> pl.DataType:
    return pl.from_arrow(pa.array([], f.type)).dtype  # type: ignore[union-attr]


def _clean_str(name: str) -> pl.Expr:
    s = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s).alias(name)


def _parse(f: Field, dtype: pl.DataType, batch: RawBatch) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Expressions for the typed value, whether parsing failed, and the reason if it did."""
    name = f.name
    is_str = dtype == pl.String
    raw = pl.col(name)  # string columns arrive cleaned (stripped, "" → null)
    t = f.type
    if pa.types.is_timestamp(t):
        if is_str:
            fmt = batch.ts_format
            aware = fmt is not None and "%z" in fmt
            parsed = raw.str.strptime(pl.Datetime("us", "UTC" if aware else None), fmt, strict=False)
            if not aware:
                parsed = parsed.dt.replace_time_zone(batch.ts_tz, ambiguous="earliest", non_existent="null")
            value = parsed.dt.convert_time_zone("UTC")
            hint = f" {fmt!r}" if fmt else " ISO 8601"
            reason = pl.format(f"timestamp '{{}}' does not match the format{hint}", raw)
        else:
            value = raw.cast(pl.Datetime("us", None if getattr(dtype, "time_zone", None) is None else "UTC"))
            if getattr(dtype, "time_zone", None) is None:
                value = value.dt.replace_time_zone(batch.ts_tz).dt.convert_time_zone("UTC")
            else:
                value = value.dt.convert_time_zone("UTC")
            reason = pl.lit("timestamp could not be converted to UTC")
    elif pa.types.is_floating(t):
        txt = raw.cast(pl.String).str.replace_all(",", "", literal=True)
        value = txt.cast(pl.Float64, strict=False) if is_str else raw.cast(pl.Float64, strict=False)
        reason = pl.format("'{}' is not a number", raw.cast(pl.String))
    elif pa.types.is_integer(t) and name == "label":
        low = raw.cast(pl.String).str.to_lowercase()
        value = pl.when(low.is_in(_TRUE)).then(1).when(low.is_in(_FALSE)).then(0).cast(pl.Int8)
        reason = pl.format("label '{}' is not 0/1 or true/false", raw.cast(pl.String))
    elif pa.types.is_integer(t):
        value = raw.cast(pl.String).cast(pl.Float64, strict=False).cast(_polars_type(f), strict=False)
        reason = pl.format("'{}' is not an integer in range", raw.cast(pl.String))
    elif pa.types.is_boolean(t):
        low = raw.cast(pl.String).str.to_lowercase()
        value = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
        reason = pl.format("'{}' is not true/false", raw.cast(pl.String))
    elif pa.types.is_date32(t):
        value = raw.str.strptime(pl.Date, "%Y-%m-%d", strict=False) if is_str else raw.cast(pl.Date, strict=False)
        reason = pl.format("date '{}' is not YYYY-MM-DD", raw.cast(pl.String))
    else:
        value = raw.cast(pl.String)
        if f.allowed:
            value = value.str.to_lowercase()
        reason = pl.lit(None, pl.String)
    # The failure test reads the materialised `_v_` column, so the parse runs only once.
    return value, raw.is_not_null() & pl.col(f"_v_{name}").is_null(), reason


def validate(batch: RawBatch, *, ingest_id: str, fx: FxTable, tokenizer: ColumnTokenizer) -> Validated:
    """Validate one raw batch into loaded and quarantined rows (see module docstring)."""
    spec: Table = TABLES[batch.table]
    df = pl.from_arrow(batch.data)
    assert isinstance(df, pl.DataFrame)
    raw_cols = [c for c in df.columns if not c.startswith("_")]
    df = df.with_columns(_clean_str(c) for c in raw_cols if df.schema[c] == pl.String)
    values: dict[str, pl.Expr] = {}
    # (field, failed, reason): `failed` is cheap and runs on every row; `reason` builds a
    # message and only runs on the rows that failed something.
    checks: list[tuple[str, pl.Expr, pl.Expr]] = []
    for f in spec.fields:
        if f.derived:
            continue
        v = pl.col(f"_v_{f.name}")
        if f.name not in df.columns:
            values[f.name] = pl.lit(None, _polars_type(f))
        else:
            value, failed, reason = _parse(f, df.schema[f.name], batch)
            values[f.name] = value
            checks.append((f.name, failed, reason))
        if f.required:
            checks.append((f.name, v.is_null(), pl.lit(f"missing required value for {f.name}")))
        if f.allowed:
            checks.append(
                (
                    f.name,
                    v.is_not_null() & ~v.is_in(list(f.allowed)),
                    pl.format(f"'{{}}' is not a known {f.name}; use one of {', '.join(f.allowed)}", v),
                )
            )
    typed = df.with_columns(**{f"_v_{k}": v for k, v in values.items()})

    if batch.table == "transactions":
        amount = pl.col("_v_amount")
        checks.append(("amount", amount.is_nan() | amount.is_infinite(), pl.lit("amount is not a finite number")))
        checks.append(("amount", amount <= 0, pl.format("amount must be > 0, got {}", amount.cast(pl.String))))
        # Currency: codes or names; unknown ones cannot be normalised, so they are quarantined.
        typed = typed.with_columns(
            _ccy=normalise_currency(typed["_v_currency"]),
            _dst_ccy=normalise_currency(typed["_v_dst_currency"]),
        )
        checks.append(
            (
                "currency",
                pl.col("_v_currency").is_not_null() & pl.col("_ccy").is_null(),
                pl.format("unknown currency '{}'; use an ISO 4217 code or a known name", pl.col("_v_currency")),
            )
        )
        checks.append(
            (
                "dst_currency",
                pl.col("_v_dst_currency").is_not_null() & pl.col("_dst_ccy").is_null(),
                pl.format("unknown currency '{}'", pl.col("_v_dst_currency")),
            )
        )
        typed = typed.with_columns(_cny=fx.to_cny(typed["_v_amount"], typed["_ccy"], typed["_v_ts"]))
        checks.append(
            (
                "currency",
                pl.col("_cny").is_null() & pl.col("_ccy").is_not_null() & pl.col("_v_ts").is_not_null() & (amount > 0),
                pl.format(
                    "no FX rate for {} on {}; add one with --fx FILE",
                    pl.col("_ccy"),
                    pl.col("_v_ts").dt.date().cast(pl.String),
                ),
            )
        )

    failed_any = pl.any_horizontal([c.fill_null(False) for _, c, _ in checks]) if checks else pl.lit(False)
    typed = typed.with_columns(_bad=failed_any)
    good = typed.filter(~pl.col("_bad"))
    # The first failing check, in schema order, names the field and the reason.
    reason: pl.Expr = pl.lit(None, pl.String)
    which: pl.Expr = pl.lit(None, pl.String)
    for name, cond, why in reversed(checks):
        reason = pl.when(cond.fill_null(False)).then(why).otherwise(reason)
        which = pl.when(cond.fill_null(False)).then(pl.lit(name)).otherwise(which)
    bad = typed.filter(pl.col("_bad")).with_columns(_reason=reason, _field=which)

    out_cols: dict[str, pl.Expr] = {}
    for f in spec.fields:
        if f.name == "ingest_id":
            out_cols[f.name] = pl.lit(ingest_id)
        elif f.name == "source_line":
            out_cols[f.name] = pl.col("_line").cast(pl.Int64)
        elif f.name == "amount_cny":
            out_cols[f.name] = pl.col("_cny")
        elif f.name == "self_transfer":
            out_cols[f.name] = pl.col("_v_src_account") == pl.col("_v_dst_account")
        elif f.name == "currency":
            out_cols[f.name] = pl.col("_ccy")
        elif f.name == "dst_currency":
            out_cols[f.name] = pl.col("_dst_ccy")
        else:
            out_cols[f.name] = pl.col(f"_v_{f.name}").cast(_polars_type(f))
    loaded = good.select(**out_cols).to_arrow()
    for f in spec.fields:
        if f.pii:
            i = loaded.schema.get_field_index(f.name)
            loaded = loaded.set_column(i, f.name, tokenizer.tokenize(f.name, loaded.column(f.name)))
    loaded = loaded.cast(spec.arrow)

    visible = [c for c in raw_cols if not (c in spec.names and spec.field(c).pii)]
    q = bad.select(
        ingest_id=pl.lit(ingest_id),
        table=pl.lit(batch.table),
        file=pl.col("_file").cast(pl.String),
        source_line=pl.col("_line").cast(pl.Int64),
        field=pl.col("_field"),
        reason=pl.col("_reason"),
        raw=pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in visible], separator=",")
        if visible
        else pl.lit(""),
    ).to_arrow()
    if batch.rejected:
        rej = pa.table(
            {
                "ingest_id": [ingest_id] * len(batch.rejected),
                "table": [r.table for r in batch.rejected],
                "file": [r.file for r in batch.rejected],
                "source_line": pa.array([r.line for r in batch.rejected], pa.int64()),
                "field": pa.array([r.field for r in batch.rejected], pa.string()),
                "reason": [r.reason for r in batch.rejected],
                "raw": [r.raw if batch.table == "transactions" else WITHHELD for r in batch.rejected],
            }
        )
        q = pa.concat_tables([q.cast(QUARANTINE.arrow), rej.cast(QUARANTINE.arrow)])
    return Validated(batch.table, loaded, q.cast(QUARANTINE.arrow))
