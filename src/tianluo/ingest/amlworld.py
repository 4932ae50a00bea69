"""Reader for IBM AMLworld `*_Trans.csv` files and their `*_Patterns.txt` ground truth.

AMLworld (Altman et al., NeurIPS 2023) has no transaction id, names an account by
the pair (bank, account) and repeats the header name `Account`. Bank ids are kept
as strings; for the canonical account id the leading zeros are dropped, because
the Patterns files zero-pad bank ids that the Trans files print unpadded. The
pattern blocks name a typology; their rows are matched to transactions by content
and label them with the typology and an attempt id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from tianluo.ingest.base import RawBatch, Reader, Rejection, SourceError
from tianluo.ingest.csvsource import CsvSource

HEADER = [
    "Timestamp",
    "From Bank",
    "Account",
    "To Bank",
    "Account_2",
    "Amount Received",
    "Receiving Currency",
    "Amount Paid",
    "Payment Currency",
    "Payment Format",
    "Is Laundering",
]
TS_FORMAT = "%Y/%m/%d %H:%M"

CHANNELS = {
    "ACH": "ach",
    "Cash": "cash",
    "Cheque": "cheque",
    "Credit Card": "card",
    "Reinvestment": "reinvestment",
    "Wire": "wire",
    "Bitcoin": "crypto",
}

_BEGIN = re.compile(r"^BEGIN LAUNDERING ATTEMPT - ([A-Z-]+)\s*(?::\s*(.*))?$")
_END = re.compile(r"^END LAUNDERING ATTEMPT")

#: Columns a Trans row and a pattern row are matched on.
MATCH_KEY = ["_ts", "_src", "_dst", "_paid", "_pay_ccy", "_recv", "_recv_ccy", "_fmt"]


def _bank(col: str) -> pl.Expr:
    """Canonical bank id: the string without leading zeros ("0" stays "0")."""
    stripped = pl.col(col).str.strip_chars().str.strip_chars_start("0")
    return pl.when(stripped == "").then(pl.lit("0")).otherwise(stripped)


def _keyed(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        _ts=pl.col("Timestamp").str.strip_chars(),
        _src=pl.concat_str([_bank("From Bank"), pl.col("Account").str.strip_chars()], separator=":"),
        _dst=pl.concat_str([_bank("To Bank"), pl.col("Account_2").str.strip_chars()], separator=":"),
        _paid=pl.col("Amount Paid").str.strip_chars().cast(pl.Float64, strict=False),
        _pay_ccy=pl.col("Payment Currency").str.strip_chars(),
        _recv=pl.col("Amount Received").str.strip_chars().cast(pl.Float64, strict=False),
        _recv_ccy=pl.col("Receiving Currency").str.strip_chars(),
        _fmt=pl.col("Payment Format").str.strip_chars(),
    )


def read_patterns(path: Path) -> pl.DataFrame:
    """Parse a Patterns file into rows with `typology`, `attempt_id` and the match key.

    Typology names become the platform's (`FAN-OUT` → `fan_out`); attempts are numbered
    in file order (`<file stem>#<n>`), which is stable for a given file.
    """
    stem = path.name.split("_Patterns")[0]
    rows: list[list[str]] = []
    meta: list[tuple[str, str, str, int]] = []
    typology = attempt = detail = None
    n = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            m = _BEGIN.match(line)
            if m:
                n += 1
                typology = m.group(1).lower().replace("-", "_")
                detail = (m.group(2) or "").strip()
                attempt = f"{stem}#{n}"
                continue
            if _END.match(line):
                typology = None
                continue
            if typology is None:
                raise SourceError(f"{path}, line {lineno}: transaction row outside a BEGIN/END block")
            fields = line.split(",")
            if len(fields) != len(HEADER):
                raise SourceError(f"{path}, line {lineno}: pattern row has {len(fields)} of {len(HEADER)} fields")
            rows.append(fields)
            meta.append((typology, attempt or "", detail or "", lineno))
    if not rows:
        return pl.DataFrame(schema={k: pl.String for k in [*MATCH_KEY, "typology", "attempt_id"]})
    df = pl.DataFrame(rows, schema=HEADER, orient="row")
    df = _keyed(df).with_columns(
        typology=pl.Series([m[0] for m in meta]),
        attempt_id=pl.Series([m[1] for m in meta]),
        pattern_detail=pl.Series([m[2] for m in meta]),
        pattern_line=pl.Series([m[3] for m in meta], dtype=pl.Int64),
    )
    return df.select([*MATCH_KEY, "typology", "attempt_id", "pattern_detail", "pattern_line"])


class AmlWorldReader(Reader):
    """`tianluo ingest --format amlworld FILE_Trans.csv [--patterns FILE_Patterns.txt]`."""

    format_name = "amlworld"

    def __init__(self, path: Path, patterns: Path | None = None, *, chunk_bytes: int | None = None):
        super().__init__(path)
        self.patterns_path = Path(patterns) if patterns else self._sibling_patterns()
        self.chunk_bytes = chunk_bytes
        self._matched_patterns = 0
        self._pattern_rows = 0

    def _sibling_patterns(self) -> Path | None:
        name = self.path.name
        if "_Trans" not in name:
            return None
        guess = self.path.with_name(name.split("_Trans")[0] + "_Patterns.txt")
        return guess if guess.exists() else None

    def files(self) -> list[Path]:
        return [self.path] + ([self.patterns_path] if self.patterns_path else [])

    def batches(self) -> Iterator[RawBatch]:
        kwargs = {"chunk_bytes": self.chunk_bytes} if self.chunk_bytes else {}
        src = CsvSource(self.path, **kwargs)
        if src.header != HEADER:
            raise SourceError(
                f"{self.path}: not an AMLworld transactions header; expected "
                f"{','.join(h.replace('_2', '') for h in HEADER)!r}, found "
                f"{','.join(h.replace('_2', '') for h in src.header)!r}"
            )
        patterns = read_patterns(self.patterns_path) if self.patterns_path else None
        self._pattern_rows = 0 if patterns is None else patterns.height
        matched: set[int] = set()
        file = str(self.path)
        # A short, file-specific prefix keeps ids unique across files without a content hash.
        prefix = self.path.name.split("_Trans")[0].split(".")[0]
        for chunk in src.chunks():
            df = pl.from_arrow(chunk.table)
            assert isinstance(df, pl.DataFrame)
            df = df.with_columns(_line=pl.Series(chunk.lines, dtype=pl.Int64))
            df = _keyed(df)
            if patterns is not None and patterns.height:
                pat = patterns.unique(subset=MATCH_KEY, keep="first", maintain_order=True)
                df = df.join(pat, on=MATCH_KEY, how="left", nulls_equal=False)
                matched.update(df["pattern_line"].drop_nulls().to_list())
            else:
                df = df.with_columns(typology=pl.lit(None, pl.String), attempt_id=pl.lit(None, pl.String))
            currency_differs = (pl.col("_pay_ccy") != pl.col("_recv_ccy")) | (pl.col("_paid") != pl.col("_recv"))
            out = df.select(
                txn_id=pl.format(f"{prefix}:{{}}", pl.col("_line")),
                ts=pl.col("_ts"),
                src_account=pl.col("_src"),
                dst_account=pl.col("_dst"),
                amount=pl.col("Amount Paid").str.strip_chars(),
                currency=pl.col("_pay_ccy"),
                channel=pl.col("_fmt").replace_strict(CHANNELS, default=pl.col("_fmt")),
                cross_border=(pl.col("_pay_ccy") != pl.col("_recv_ccy")),
                src_bank=pl.col("From Bank").str.strip_chars(),
                dst_bank=pl.col("To Bank").str.strip_chars(),
                dst_amount=pl.when(currency_differs).then(pl.col("Amount Received").str.strip_chars()),
                dst_currency=pl.when(currency_differs).then(pl.col("_recv_ccy")),
                label=pl.col("Is Laundering").str.strip_chars(),
                typology=pl.col("typology"),
                attempt_id=pl.col("attempt_id"),
                _file=pl.lit(file),
                _line=pl.col("_line"),
            )
            rejected = [Rejection("transactions", file, b.line, None, b.reason, b.raw) for b in chunk.bad]
            yield RawBatch("transactions", out.to_arrow(), rejected, ts_format=TS_FORMAT)
        self._matched_patterns = len(matched)

    def notes(self) -> dict[str, object]:
        if not self.patterns_path:
            return {}
        return {
            "patterns_file": str(self.patterns_path),
            "pattern_rows": self._pattern_rows,
            "pattern_rows_matched": self._matched_patterns,
            "pattern_rows_unmatched": self._pattern_rows - self._matched_patterns,
        }
