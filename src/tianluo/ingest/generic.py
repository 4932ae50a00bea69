"""Generic CSV / Parquet reader driven by a mapping file, and the native Tianluo source folder.

Banks export transactions in as many layouts as there are core systems. Rather
than a reader per bank, a small TOML mapping names which source column feeds
which canonical column, the timestamp format and zone, constant defaults and
value translations (e.g. `转账` → `transfer`). Statement-style exports that list
one account with a debit/credit flag and a counterparty are mapped with a
`[statement]` section. See docs/ingest.md for the full mapping reference.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tianluo.ingest.base import RawBatch, Reader, Rejection, SourceError
from tianluo.ingest.csvsource import CsvSource
from tianluo.schema import TABLES

PARQUET_BATCH_ROWS = 500_000
#: Timestamp layout of the native CSV format (what `tianluo simulate --format csv` writes).
NATIVE_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Mapping:
    """A parsed mapping file. `columns` maps canonical name → source column name."""

    table: str = "transactions"
    format: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    ts_format: str | None = None
    timezone: str = "UTC"
    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    statement: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path) -> Mapping:
        """Read and check a mapping file; every mistake names the key and what is allowed."""
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SourceError(f"{path}: cannot read the mapping file (UTF-8 TOML expected): {exc}") from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "mapping") -> Mapping:
        unknown = set(raw) - {"table", "source", "columns", "defaults", "values", "statement"}
        if unknown:
            raise SourceError(f"{where}: unknown section(s) {sorted(unknown)}")
        table = raw.get("table", "transactions")
        if table not in ("transactions", "accounts", "parties"):
            raise SourceError(f"{where}: table must be transactions, accounts or parties, not {table!r}")
        canon = set(TABLES[table].names) - {"ingest_id", "source_line", "amount_cny", "self_transfer"}
        for sect in ("columns", "defaults", "values"):
            bad = set(raw.get(sect, {})) - canon
            if bad:
                raise SourceError(
                    f"{where}: [{sect}] names unknown {table} column(s) {sorted(bad)}; "
                    f"known: {', '.join(sorted(canon))}"
                )
        source = raw.get("source", {})
        fmt = source.get("format")
        if fmt not in (None, "csv", "parquet"):
            raise SourceError(f"{where}: source.format must be csv or parquet, not {fmt!r}")
        stmt = raw.get("statement")
        if stmt is not None:
            need = {"account", "counterparty", "flag", "debit", "credit"}
            if need - set(stmt):
                raise SourceError(f"{where}: [statement] needs keys {sorted(need)}")
        return cls(
            table=table,
            format=fmt,
            encoding=source.get("encoding", "utf-8"),
            delimiter=source.get("delimiter", ","),
            ts_format=source.get("ts_format"),
            timezone=source.get("timezone", "UTC"),
            columns={k: str(v) for k, v in raw.get("columns", {}).items()},
            defaults={k: str(v) for k, v in raw.get("defaults", {}).items()},
            values={k: {str(a): str(b) for a, b in v.items()} for k, v in raw.get("values", {}).items()},
            statement=stmt,
        )

    def source_columns(self) -> list[str]:
        cols = list(self.columns.values())
        if self.statement:
            cols += [self.statement["account"], self.statement["counterparty"], self.statement["flag"]]
        return cols


def _to_canonical(df: pl.DataFrame, m: Mapping) -> pl.DataFrame:
    exprs: dict[str, pl.Expr] = {}
    for canon, src in m.columns.items():
        exprs[canon] = pl.col(src)
    if m.statement:
        st = m.statement
        flag = pl.col(st["flag"]).cast(pl.String).str.strip_chars()
        debit = flag.is_in([str(x) for x in st["debit"]])
        credit = flag.is_in([str(x) for x in st["credit"]])
        acct, cp = pl.col(st["account"]), pl.col(st["counterparty"])
        # A debit pays out of the statement account; a credit pays into it. An unknown flag
        # leaves both sides null so the validator quarantines the row with a reason.
        exprs["src_account"] = pl.when(debit).then(acct).when(credit).then(cp)
        exprs["dst_account"] = pl.when(debit).then(cp).when(credit).then(acct)
    for canon, value in m.defaults.items():
        exprs[canon] = exprs[canon].fill_null(pl.lit(value)) if canon in exprs else pl.lit(value)
    for canon, table in m.values.items():
        if canon in exprs:
            e = exprs[canon].cast(pl.String)
            exprs[canon] = e.replace_strict(table, default=e)
    out = df.select(**exprs, _file="_file", _line="_line")
    return out


def _split_statement_flags(df: pl.DataFrame, m: Mapping, file: str) -> tuple[pl.DataFrame, list[Rejection]]:
    """Reject statement rows whose debit/credit flag is neither, naming the flag column and values."""
    if not m.statement:
        return df, []
    st = m.statement
    known = [str(x) for x in [*st["debit"], *st["credit"]]]
    flag = pl.col(st["flag"]).cast(pl.String).str.strip_chars()
    bad = df.filter(~flag.is_in(known) | flag.is_null())
    if bad.height == 0:
        return df, []
    shown = [c for c in df.columns if not c.startswith("_")]
    rejects = [
        Rejection(
            m.table,
            file,
            row["_line"],
            "src_account",
            f"{st['flag']} '{row[st['flag']]}' is neither debit {st['debit']} nor credit {st['credit']}; "
            "add the value to [statement] in the mapping",
            ",".join("" if row[c] is None else str(row[c]) for c in shown),
        )
        for row in bad.iter_rows(named=True)
    ]
    return df.filter(flag.is_in(known)), rejects


class MappedReader(Reader):
    """`tianluo ingest --format csv|parquet --mapping MAP.toml FILE`."""

    format_name = "mapped"

    def __init__(self, path: Path, mapping: Mapping, *, chunk_bytes: int | None = None):
        super().__init__(path)
        self.mapping = mapping
        self.chunk_bytes = chunk_bytes

    def _kind(self) -> str:
        if self.mapping.format:
            return self.mapping.format
        return "parquet" if self.path.suffix == ".parquet" else "csv"

    def batches(self) -> Iterator[RawBatch]:
        m = self.mapping
        file = str(self.path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        if self._kind() == "parquet":
            yield from self._parquet(file)
            return
        kwargs: dict[str, Any] = {"encoding": m.encoding, "delimiter": m.delimiter}
        if self.chunk_bytes:
            kwargs["chunk_bytes"] = self.chunk_bytes
        src = CsvSource(self.path, **kwargs)
        src.require(m.source_columns())
        for chunk in src.chunks():
            df = pl.from_arrow(chunk.table)
            assert isinstance(df, pl.DataFrame)
            df = df.with_columns(_file=pl.lit(file), _line=pl.Series(chunk.lines, dtype=pl.Int64))
            rejected = [Rejection(m.table, file, b.line, None, b.reason, b.raw) for b in chunk.bad]
            df, flag_rejects = _split_statement_flags(df, m, file)
            rejected += flag_rejects
            yield RawBatch(m.table, _to_canonical(df, m).to_arrow(), rejected, ts_format=m.ts_format, ts_tz=m.timezone)

    def _parquet(self, file: str) -> Iterator[RawBatch]:
        m = self.mapping
        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{self.path}: not a readable Parquet file: {exc}") from None
        names = pf.schema_arrow.names
        missing = [c for c in m.source_columns() if c not in names]
        if missing:
            raise SourceError(f"{self.path}: missing column(s) {missing}; file has {names}")
        line = 1  # Parquet has no lines: `source_line` is the 1-based row number.
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            n = df.height
            df = df.with_columns(_file=pl.lit(file), _line=pl.int_range(line, line + n, dtype=pl.Int64))
            line += n
            df, rejected = _split_statement_flags(df, m, file)
            yield RawBatch(m.table, _to_canonical(df, m).to_arrow(), rejected, ts_format=m.ts_format, ts_tz=m.timezone)


def identity_mapping(table: str, header: list[str], *, ts_format: str | None = None) -> Mapping:
    """Mapping for a file already in canonical column names (the native format)."""
    canon = set(TABLES[table].names)
    return Mapping(table=table, ts_format=ts_format, columns={c: c for c in header if c in canon})


class NativeReader(Reader):
    """A folder in Tianluo's own layout (what `tianluo simulate` writes).

    `tianluo-source.json` marks the folder; `transactions`, `accounts` and `parties`
    files (CSV or Parquet) use canonical column names, so no mapping is needed.
    """

    format_name = "tianluo"

    def __init__(self, path: Path, *, chunk_bytes: int | None = None):
        super().__init__(path)
        marker = self.path / "tianluo-source.json"
        if not marker.is_file():
            raise SourceError(f"{self.path}: not a Tianluo source folder (no tianluo-source.json)")
        try:
            self.meta = json.loads(marker.read_text())
        except ValueError as exc:
            raise SourceError(f"{marker}: not valid JSON: {exc}") from None
        self.chunk_bytes = chunk_bytes
        self._parts: list[tuple[str, Path]] = []
        for table in ("parties", "accounts", "transactions"):
            for ext in ("parquet", "csv", "csv.gz"):
                p = self.path / f"{table}.{ext}"
                if p.exists():
                    self._parts.append((table, p))
                    break
        if not any(t == "transactions" for t, _ in self._parts):
            raise SourceError(f"{self.path}: no transactions.parquet / transactions.csv")

    def files(self) -> list[Path]:
        return [p for _, p in self._parts]

    def batches(self) -> Iterator[RawBatch]:
        for table, path in self._parts:
            header = pq.ParquetFile(path).schema_arrow.names if path.suffix == ".parquet" else CsvSource(path).header
            mapping = identity_mapping(table, header, ts_format=NATIVE_TS_FORMAT)
            yield from MappedReader(path, mapping, chunk_bytes=self.chunk_bytes).batches()
