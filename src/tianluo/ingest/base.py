"""The contract between a source reader and the validator.

A reader knows one format: how to split it into records, where each record sits
in the file, and which source field means which canonical column. It does not
judge values: it hands strings (or already typed values) to `validate`, which
applies the same rules to every format. A record the reader cannot even split
into fields (wrong field count, undecodable bytes, broken XML element) is
returned as a `Rejection` instead, so that every record ends in exactly one
place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa


class SourceError(ValueError):
    """The source as a whole cannot be read (missing column, not a file of this format…).

    Raised before anything is stored; the message names the file and what would fix it.
    """


@dataclass(frozen=True)
class Rejection:
    """A record that could not be turned into canonical fields, and why."""

    table: str
    file: str
    line: int
    field: str | None
    reason: str
    raw: str


@dataclass
class RawBatch:
    """A slice of records for one canonical table.

    `data` uses canonical column names; any column may be a string to be parsed by
    the validator. It must carry `_file` (string) and `_line` (int64): the source file
    and the 1-based line of the record (header = line 1; for XML, the line where the
    record's element starts). `ts_format` is the strptime format of a string `ts`
    column; `ts_tz` the time zone naive timestamps are in. `currency` may be an ISO
    4217 code or a name the currency table knows ("US Dollar", "Yuan").
    """

    table: str
    data: pa.Table
    rejected: list[Rejection] = field(default_factory=list)
    ts_format: str | None = None
    ts_tz: str = "UTC"


class Reader(ABC):
    """One source format. Subclasses implement `batches`; `describe` is for the CLI."""

    #: Short name used on the command line (`tianluo ingest --format NAME`).
    format_name: str = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @abstractmethod
    def batches(self) -> Iterator[RawBatch]:
        """Yield batches in file order. Raise `SourceError` before the first batch if unreadable."""

    def files(self) -> list[Path]:
        """The files this reader consumes (fingerprinted for idempotent re-ingest)."""
        return [self.path]

    def notes(self) -> dict[str, object]:
        """Format-specific facts for the data-quality report (e.g. unmatched pattern rows)."""
        return {}
