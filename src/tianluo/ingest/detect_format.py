"""Pick the reader for a source path, from an explicit format name or from what the path looks like."""

from __future__ import annotations

from pathlib import Path

from tianluo.ingest.amlsim import AmlSimReader
from tianluo.ingest.amlworld import HEADER as AMLWORLD_HEADER
from tianluo.ingest.amlworld import AmlWorldReader
from tianluo.ingest.base import Reader, SourceError
from tianluo.ingest.csvsource import CsvSource
from tianluo.ingest.generic import MappedReader, Mapping, NativeReader

#: Format names accepted by `tianluo ingest --format`.
FORMATS = ("auto", "tianluo", "amlworld", "amlsim", "pacs008", "csv", "parquet")


def guess_format(path: Path) -> str:
    """Name the format of `path`, or raise `SourceError` saying which flag to pass."""
    if path.is_dir():
        if (path / "tianluo-source.json").exists():
            return "tianluo"
        if (
            any((path / n).exists() for n in ("transactions.csv", "transactions.csv.gz"))
            and (path / "accounts.csv").exists()
        ):
            return "amlsim"
        if any(path.glob("*.xml")):
            return "pacs008"
        raise SourceError(f"{path}: cannot tell the format of this folder; pass --format")
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".xml":
        return "pacs008"
    if path.suffix.lower() in (".csv", ".gz", ".txt"):
        try:
            header = CsvSource(path).header
        except SourceError:
            header = []
        if header == AMLWORLD_HEADER:
            return "amlworld"
    raise SourceError(
        f"{path}: not a format Tianluo recognises by itself; pass --format and, for csv/parquet, "
        "--mapping MAP.toml (see docs/ingest.md)"
    )


def open_reader(
    path: Path | str,
    fmt: str = "auto",
    *,
    mapping: Path | None = None,
    patterns: Path | None = None,
    encoding: str | None = None,
) -> Reader:
    """Build the reader for `path`; `mapping` is required for csv/parquet sources."""
    path = Path(path)
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = "csv" if mapping is not None else guess_format(path)
    if fmt == "tianluo":
        return NativeReader(path)
    if fmt == "amlworld":
        return AmlWorldReader(path, patterns)
    if fmt == "amlsim":
        return AmlSimReader(path)
    if fmt == "pacs008":
        from tianluo.ingest.iso20022 import Pacs008Reader

        return Pacs008Reader(path)
    if mapping is None:
        raise SourceError(f"--format {fmt} needs --mapping MAP.toml (see docs/ingest.md)")
    m = Mapping.load(mapping)
    if fmt in ("csv", "parquet") and m.format is None:
        m.format = fmt
    if encoding:
        m.encoding = encoding
    return MappedReader(path, m)
