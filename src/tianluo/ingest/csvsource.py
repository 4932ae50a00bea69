"""Line-exact, bounded-memory CSV reading: every data line comes out as a row or as a rejection.

Fast CSV parsers (pyarrow, polars) drop the link between a row and its line in the
file as soon as a line is skipped or malformed. Tianluo needs that link for every
quarantined row, so this module cuts the file into byte chunks at line ends, finds
the lines with numpy, rejects lines that cannot be rows (wrong field count, bytes
that are not valid in the declared encoding) with their line number, and only
then hands the good lines to pyarrow's parser, all as strings. Quoted fields are
supported: delimiters inside quotes are told apart by quote parity, and only a chunk
where a quoted field spans lines goes through Python's csv module (slower but exact).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tianluo.ingest.base import SourceError

#: Default chunk size: large enough for pyarrow's parser to be efficient, small enough
#: that a 5M-row file never holds more than a few chunks in memory.
CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class BadLine:
    """A line that could not be split into the header's fields."""

    line: int
    reason: str
    raw: str


@dataclass
class CsvChunk:
    """Good rows of one chunk (all string columns, in header order) and their line numbers."""

    table: pa.Table
    lines: np.ndarray  # int64, 1-based line number of each row in `table`
    bad: list[BadLine]
    blank_lines: int


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading, transparently gunzipping `*.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _decode(raw: bytes, encoding: str) -> str:
    return raw.decode(encoding, errors="replace")


def _encoding_reason(exc: UnicodeDecodeError, encoding: str) -> str:
    byte = exc.object[exc.start : exc.start + 1].hex()
    hint = (
        "; the file looks like GB18030/GBK — pass --encoding gb18030"
        if encoding.replace("-", "").lower() == "utf8"
        else ""
    )
    return f"bytes are not valid {encoding} (byte 0x{byte} at column {exc.start + 1}){hint}"


class CsvSource:
    """A delimited text file read as header + chunks of string rows.

    `unique_header=False` renames repeated header names (AMLworld repeats `Account`)
    to `name`, `name_2`, … so that positional meaning is kept.
    """

    def __init__(
        self,
        path: Path,
        *,
        encoding: str = "utf-8",
        delimiter: str = ",",
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.delimiter = delimiter
        self.chunk_bytes = chunk_bytes
        self.header = self._read_header()

    def _read_header(self) -> list[str]:
        try:
            with open_binary(self.path) as fh:
                first = fh.readline()
        except (OSError, EOFError) as exc:
            raise SourceError(f"{self.path}: cannot read the file: {exc}") from None
        if not first.strip():
            raise SourceError(f"{self.path}: the file is empty; a header line is expected")
        try:
            text = first.decode(self.encoding).lstrip("\ufeff").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.path}, line 1 (header): {_encoding_reason(exc, self.encoding)}") from None
        names = next(csv.reader([text], delimiter=self.delimiter))
        seen: dict[str, int] = {}
        out = []
        for n in names:
            n = n.strip()
            seen[n] = seen.get(n, 0) + 1
            out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
        return out

    def require(self, columns: list[str]) -> None:
        """Raise a clear `SourceError` if any of `columns` is missing from the header."""
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise SourceError(
                f"{self.path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
                f"header has {', '.join(repr(h) for h in self.header)}"
            )

    def chunks(self) -> Iterator[CsvChunk]:
        """Yield chunks in file order; line numbers count the header as line 1."""
        ncols = len(self.header)
        next_line = 2
        leftover = b""
        try:
            fh = open_binary(self.path)
            fh.readline()  # header
            while True:
                try:
                    block = fh.read(self.chunk_bytes)
                except (EOFError, gzip.BadGzipFile, OSError) as exc:
                    # A truncated .gz: keep what decompressed, then report the cut.
                    raise SourceError(
                        f"{self.path}: the compressed stream is damaged or truncated after "
                        f"line {next_line - 1} ({exc}); re-export the file"
                    ) from None
                if not block:
                    if leftover:
                        chunk = self._parse(leftover, next_line, ncols)
                        yield chunk
                    return
                data = leftover + block
                cut = data.rfind(b"\n")
                if cut < 0:
                    leftover = data
                    continue
                body, leftover = data[: cut + 1], data[cut + 1 :]
                chunk = self._parse(body, next_line, ncols)
                next_line += body.count(b"\n")
                yield chunk
        finally:
            if "fh" in locals():
                fh.close()

    # -- one chunk -------------------------------------------------------------------

    def _parse(self, body: bytes, first_line: int, ncols: int) -> CsvChunk:
        quoted = b'"' in body
        buf = np.frombuffer(body, dtype=np.uint8)
        nl = np.flatnonzero(buf == 10)
        if len(nl) == 0 or nl[-1] != len(buf) - 1:
            nl = np.append(nl, len(buf))  # last line without a newline (end of file)
        starts = np.concatenate(([0], nl[:-1] + 1))
        ends = nl.copy()
        # Strip a CR before LF.
        has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
        ends = ends - has_cr
        lengths = ends - starts
        line_no = first_line + np.arange(len(starts), dtype=np.int64)
        delim = ord(self.delimiter)
        dpos = np.flatnonzero(buf == delim)
        if quoted:
            qpos = np.flatnonzero(buf == 34)
            quotes = np.searchsorted(qpos, ends) - np.searchsorted(qpos, starts)
            if (quotes % 2).any():
                # A quoted field spans lines: only the record-aware csv module maps lines right.
                return self._parse_quoted(body, first_line, ncols)
            # Every line has balanced quotes, so a delimiter is inside a quoted field exactly
            # when an odd number of quotes precede it.
            dpos = dpos[np.searchsorted(qpos, dpos) % 2 == 0]
        fields = np.searchsorted(dpos, ends) - np.searchsorted(dpos, starts) + 1
        blank = lengths == 0
        good = (fields == ncols) & ~blank
        bad: list[BadLine] = []

        # Encoding check: decode the good lines at once; only on failure look line by line.
        try:
            body.decode(self.encoding)
            bad_enc = np.zeros(len(starts), dtype=bool)
        except UnicodeDecodeError:
            bad_enc = np.zeros(len(starts), dtype=bool)
            for i in np.flatnonzero(~blank):
                raw = body[starts[i] : ends[i]]
                try:
                    raw.decode(self.encoding)
                except UnicodeDecodeError as exc:
                    bad_enc[i] = True
                    bad.append(
                        BadLine(int(line_no[i]), _encoding_reason(exc, self.encoding), _decode(raw, self.encoding))
                    )
        # A carriage return inside a line (not before its LF) would end the row for the Arrow
        # parser and shift every later line: such a row is quarantined, never parsed.
        crpos = np.flatnonzero(buf == 13)
        inner_cr = (np.searchsorted(crpos, ends) - np.searchsorted(crpos, starts)) > 0
        for i in np.flatnonzero(~good & ~blank & ~bad_enc):
            raw = body[starts[i] : ends[i]]
            bad.append(BadLine(int(line_no[i]), self._count_reason(int(fields[i]), ncols), _decode(raw, self.encoding)))
        for i in np.flatnonzero(good & inner_cr & ~bad_enc):
            raw = body[starts[i] : ends[i]]
            bad.append(BadLine(int(line_no[i]), "row holds a carriage return (CR without LF) inside a field",
                               _decode(raw, self.encoding)))
        good &= ~bad_enc & ~inner_cr
        bad.sort(key=lambda b: b.line)

        if good.all():
            text = body
        else:
            idx = np.flatnonzero(good)
            text = b"\n".join(body[starts[i] : ends[i]] for i in idx) + b"\n" if len(idx) else b""
        table = self._arrow_parse(text, int(good.sum()), quoted)
        return CsvChunk(table, line_no[good], bad, int(blank.sum()))

    @staticmethod
    def _count_reason(found: int, expected: int) -> str:
        if found < expected:
            return f"row has {found} of {expected} fields (truncated line or missing delimiter)"
        return f"row has {found} fields, the header has {expected} (stray delimiter? quote the field)"

    def _arrow_parse(self, text: bytes, nrows: int, quoted: bool) -> pa.Table:
        names = [f"c{i}" for i in range(len(self.header))]
        if nrows == 0:
            return pa.table({n: pa.array([], pa.string()) for n in names}).rename_columns(self.header)
        if self.encoding.replace("-", "").lower() not in ("utf8",):
            text = text.decode(self.encoding).encode("utf-8")
        table = pacsv.read_csv(
            io.BytesIO(text),
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 26),
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"' if quoted else False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        if table.num_rows != nrows:  # pragma: no cover - guards the line mapping
            raise RuntimeError(f"{self.path}: parsed {table.num_rows} rows from {nrows} lines")
        return table.rename_columns(self.header)

    def _parse_quoted(self, body: bytes, first_line: int, ncols: int) -> CsvChunk:
        """Exact path for chunks with quotes (also handles newlines inside quoted fields)."""
        text = body.decode(self.encoding, errors="surrogateescape")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
        rows: list[list[str]] = []
        lines: list[int] = []
        bad: list[BadLine] = []
        blank = 0
        prev_end = 0
        for rec in reader:
            start = first_line + prev_end
            prev_end = reader.line_num
            if not rec:
                blank += 1
                continue
            joined = self.delimiter.join(rec)
            if any("\udc80" <= ch <= "\udcff" for ch in joined):
                raw = joined.encode(self.encoding, errors="surrogateescape")
                try:
                    raw.decode(self.encoding)
                except UnicodeDecodeError as exc:
                    bad.append(BadLine(start, _encoding_reason(exc, self.encoding), _decode(raw, self.encoding)))
                    continue
            if len(rec) != ncols:
                bad.append(BadLine(start, self._count_reason(len(rec), ncols), joined))
                continue
            rows.append(rec)
            lines.append(start)
        cols = list(zip(*rows, strict=True)) if rows else [()] * ncols
        table = pa.table({name: pa.array(list(col), pa.string()) for name, col in zip(self.header, cols, strict=True)})
        return CsvChunk(table, np.asarray(lines, dtype=np.int64), bad, blank)
